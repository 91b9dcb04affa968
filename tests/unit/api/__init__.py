"""Tests of the extra spec validators, through Nova's API validation code.

Loading Nova imports eventlet (nova.context imports futurist, which
imports it), after which Nova's threading choice can no longer be made,
and tests/unit/scheduler needs it made (see there). Discovery of the unit
tests alone imports this package before any other that loads Nova, so
the choice is made here, as for the functional tests (see
nova_substrate.testing).
"""

import nova_substrate.testing  # noqa: F401
