"""Functional tests: Nova's in-process services on the host's libvirtd.

Nova 34 runs nova-compute, the conductor and the scheduler on native
threads, and so do these tests. Nova's test harness would otherwise
monkey-patch the whole test process with eventlet, which would turn the
substrate engine's threads into green threads, and with them those of
every other test that shares the stestr worker (the integration tests
restore guests concurrently from threads). Nova reads this choice once,
when its harness is first imported, so it is made here, before any test
module imports Nova.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()
