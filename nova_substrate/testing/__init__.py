"""Nova's in-process cloud on the host's real libvirtd.

Used by the functional tests and by ``nova-substrate bench nova``. Needs
Nova's test harness (shipped in Nova's wheel as nova.tests) and its test
requirements (test-requirements.txt), root and a running libvirtd.

Nova 34 runs nova-compute, the conductor and the scheduler on native
threads, and so does this cloud. Nova's test harness would otherwise
monkey-patch the whole process with eventlet, which would turn the
substrate engine's threads into green threads, and with them those of
every other test that shares the process (the integration tests restore
guests concurrently from threads). Nova reads this choice once, when its
harness is first imported, so it is made here, before anything of this
package imports Nova.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()
