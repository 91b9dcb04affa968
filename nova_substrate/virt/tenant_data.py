"""What a tenant's instance is given at boot, handed to an activated clone.

A booted instance reads its instance's data (public keys, user-data,
network configuration, vendor data, admin password) from its config
drive or the metadata service, and cloud-init makes it a new instance
with it. An activated clone has done its booting long ago, as the
substrate's placeholder instance: it gets the very documents a config
drive would carry, through the guest hook, and cloud-init in the guest
runs its per-instance stages against them (guest/nova-substrate-hook).

A substrate whose guest has no cloud-init cannot take those documents,
so an instance that brings any (a keypair, user-data, a static address)
is booted instead, with the reason recorded. (An admin password is not
among them: Nova makes one for every server, and an image without
cloud-init would not honour it when booted either.)
"""

from nova.api.metadata import base as instance_metadata

# The parts of a config drive cloud-init reads: the newest OpenStack
# version, the files it refers to, and the EC2 copy of the metadata.
_READ_BY_CLOUD_INIT = ('openstack/latest/', 'openstack/content/',
                       'ec2/latest/')


def instance_data(instance, injected_files, admin_password, network_info):
    """The instance's config drive contents: relative path to bytes.

    Made as LibvirtDriver makes a config drive, so that a clone and a
    booted instance of the same request read the same documents.
    """
    extra_md = {}
    if admin_password:
        extra_md['admin_pass'] = admin_password
    metadata = instance_metadata.InstanceMetadata(
        instance, content=injected_files or [], extra_md=extra_md,
        network_info=network_info)
    files = {}
    for path, value in metadata.metadata_for_config_drive():
        if path.startswith(_READ_BY_CLOUD_INIT):
            files[path] = value if isinstance(value, bytes) else \
                value.encode('utf-8')
    return files


def static_subnets(network_info):
    """CIDRs of the subnets an instance has an address on without DHCP."""
    cidrs = []
    for vif in network_info or []:
        for subnet in vif['network']['subnets']:
            # What makes network_data.json say ipv4_dhcp (nova.virt.netutils).
            dhcp = (subnet.get_meta('dhcp_server') is not None or
                    subnet.get_meta('enable_dhcp'))
            if subnet['ips'] and subnet['version'] == 4 and not dhcp:
                cidrs.append(str(subnet['cidr']))
    return cidrs


def unserved(template_meta, instance, network_info):
    """Why a clone of this substrate would lose the tenant's data, or None.

    Substrates built before the guest's cloud-init was recorded are
    taken as having none.
    """
    guest = template_meta.get('guest') or {}
    if guest.get('cloud_init', 'absent') != 'absent':
        return None
    needs = []
    if instance.key_data:
        needs.append('a keypair')
    if instance.user_data:
        needs.append('user-data')
    static = static_subnets(network_info)
    if static:
        needs.append('static addresses on %s' % ', '.join(static))
    if not needs:
        return None
    return ('the substrate\'s image has no cloud-init to take the '
            'instance\'s %s' % ' and '.join(needs))
