"""Functional tests: Nova's in-process services on the host's libvirtd.

Importing nova_substrate.testing first makes Nova's threading choice for
the whole test process (see there).
"""

import nova_substrate.testing  # noqa: F401
