"""The instance a substrate is built as: no tenant, no identity, no row.

LibvirtDriver makes a domain from an Instance object. A substrate is
built from the domain LibvirtDriver makes for an instance of its image
and flavor, so the driver is given one that exists only in memory: a
fresh uuid, the image's system metadata, the flavor, and placeholder
owner and names. Nothing in it comes from a tenant, so nothing of one
reaches the substrate.
"""

from oslo_utils import uuidutils

from nova.network import model as network_model
from nova import objects
from nova.objects import fields

OWNER = 'nova-substrate'
HOSTNAME = 'substrate'


def make(context, source, host, node):
    """An unsaved Instance of source's image and flavor."""
    flavor = source.flavor
    instance = objects.Instance(context)
    instance.id = 0
    instance.uuid = uuidutils.generate_uuid()
    instance.user_id = instance.project_id = OWNER
    instance.display_name = instance.hostname = HOSTNAME
    instance.image_ref = source.image_meta.id
    instance.kernel_id = source.kernel_id or ''
    instance.ramdisk_id = source.ramdisk_id or ''
    instance.flavor = flavor
    instance.old_flavor = instance.new_flavor = None
    instance.instance_type_id = flavor.id
    for field in ('memory_mb', 'vcpus', 'root_gb', 'ephemeral_gb'):
        setattr(instance, field, getattr(flavor, field))
    instance.system_metadata = dict(source.image_sysmeta)
    instance.metadata = {}
    instance.config_drive = ''
    instance.key_data = None
    instance.user_data = None
    instance.launched_at = None
    instance.launch_index = 0
    instance.host = host
    instance.node = node
    instance.vm_state = fields.InstanceState.BUILDING
    instance.task_state = None
    instance.numa_topology = None
    instance.pci_requests = objects.InstancePCIRequests(requests=[])
    instance.pci_devices = objects.PciDeviceList(objects=[])
    instance.resources = None
    instance.vcpu_model = None
    instance.trusted_certs = None
    instance.device_metadata = None
    instance.migration_context = None
    instance.keypairs = objects.KeyPairList(objects=[])
    instance.tags = objects.TagList(objects=[])
    instance.info_cache = objects.InstanceInfoCache(
        network_info=network_model.NetworkInfo())
    instance.security_groups = objects.SecurityGroupList(objects=[])
    instance.availability_zone = None
    instance.os_type = None
    instance.root_device_name = None
    instance.default_ephemeral_device = None
    instance.default_swap_device = None
    instance.ephemeral_key_uuid = None
    instance.hidden = False
    # Every other field a value, so nothing is ever lazy-loaded: there is
    # no row to load it from.
    for field in ('architecture', 'vm_mode', 'key_name', 'locked_by',
                  'terminated_at', 'display_description', 'access_ip_v4',
                  'access_ip_v6', 'cell_name', 'compute_id', 'created_at',
                  'updated_at', 'deleted_at', 'fault'):
        setattr(instance, field, None)
    for field in ('locked', 'auto_disk_config', 'shutdown_terminate',
                  'disable_terminate', 'cleaned', 'deleted'):
        setattr(instance, field, False)
    instance.power_state = 0
    instance.progress = 0
    instance.reservation_id = 'r-' + OWNER
    instance.launched_on = host
    instance.services = objects.ServiceList(objects=[])
    return instance
