"""nova-substrate's compute drivers, where Nova looks for drivers.

Nova loads ``[DEFAULT] compute_driver`` as ``nova.virt.<value>``, so
``compute_driver = substrate.SubstrateDriver`` needs this module. It is
installed into Nova's ``nova/virt/`` by a regular (not editable)
``pip install`` of nova-substrate; the drivers live in nova_substrate.
"""

from nova_substrate.virt.driver import SubstrateDriver  # noqa: F401
from nova_substrate.virt.fake import FakeSubstrateDriver  # noqa: F401
