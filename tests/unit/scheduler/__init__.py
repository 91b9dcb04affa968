"""Tests of SubstrateFilter and SubstrateWeigher with Nova's own fakes.

Importing Nova's unit test fakes (nova.tests.unit) applies eventlet's
monkey patching to the whole process unless Nova's threading choice was
made before eventlet was imported (loading Nova imports it through
futurist). nova_substrate.testing makes that choice; importing it here
covers running these tests on their own. In a whole run it is made
earlier, by tests/functional (stestr's test path) or tests/unit/api (the
unit tests' path), which discovery imports before any other test that
loads Nova.
"""

import nova_substrate.testing  # noqa: F401
