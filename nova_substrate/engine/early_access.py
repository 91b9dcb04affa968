"""What a clone's tenant can use before cloud-init has run: login and network.

cloud-init is Python, and under emulation (TCG) its per-instance stages
take 15 to 30 s in a clone: every YAML file it reads costs half a second.
A booted instance pays that too, but it is not what a tenant waits for:
they wait for their address to answer and their key to log in. The hook
can do exactly those two things natively, in milliseconds, before it
starts cloud-init in the background: the instance's own documents (the
config drive's network_data.json and meta_data.json) say what they are.
cloud-init then does all it does at a boot (renders the network
configuration for the image's network stack, writes the same keys, runs
the user's data); what the hook did is what it would have done.

The hook is only told to do what cloud-init would do the same way:

* static IPv4 addresses, routes and the MTU of the links that carry a
  MAC address (VLAN and bond links are left to cloud-init), and DHCP on
  the subnets that have it;
* the instance's public keys for the image's default user, unless the
  user data may change who that user is or whether it gets keys (a
  ``users``, ``user``, ``system_info``, ``disable_root`` or
  ``allow_public_ssh_keys`` key, or user data cloud-init would have to
  unpack first: MIME, gzip, ``#include``), or vendor data has any
  cloud-config.
"""

import gzip
import ipaddress
import json

import yaml

META_DATA = 'openstack/latest/meta_data.json'
NETWORK_DATA = 'openstack/latest/network_data.json'
USER_DATA = 'openstack/latest/user_data'
VENDOR_DATA = ('openstack/latest/vendor_data.json',
               'openstack/latest/vendor_data2.json')

# cloud-config keys that decide who the default user is, or whether the
# instance's keys are given to it.
_KEYS_DECIDED_BY = frozenset(('users', 'user', 'system_info', 'disable_root',
                              'allow_public_ssh_keys'))
# network_data.json link types that are a NIC of the instance.
_NIC_LINK_TYPES = frozenset(('phy', 'ovs', 'bridge', 'tap', 'vif', 'vhostuser',
                             'hw_veb', 'hyperv', 'dvs', 'vrouter', 'midonet',
                             'ethernet', None))


def hook_fields(instance_data):
    """The hook's early-access input fields for a clone's instance data.

    Returns a dict with ``login_keys`` (a list of authorized_keys lines,
    each handed to the hook as a ``login_key`` line; empty where the
    hook is not to write them) and any of ``early_nics`` (space-separated
    ``MAC,MTU,static,ADDRESS/PREFIX`` or ``MAC,MTU,dhcp,-``) and
    ``early_routes`` (``MAC,DESTINATION/PREFIX,GATEWAY``). Documents that
    are missing or not understood give no entry: cloud-init does it all
    then, later.
    """
    fields = {'login_keys': []}
    if not instance_data:
        return fields
    nics, routes = _network(_json(instance_data, NETWORK_DATA))
    if nics:
        fields['early_nics'] = ' '.join(nics)
    if routes:
        fields['early_routes'] = ' '.join(routes)
    fields['login_keys'] = _login_keys(instance_data)
    return fields


def _json(files, path):
    data = files.get(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _network(network_data):
    if not isinstance(network_data, dict):
        return [], []
    macs = {}
    mtus = {}
    for link in network_data.get('links') or []:
        mac = (link.get('ethernet_mac_address') or '').lower()
        if link.get('type') in _NIC_LINK_TYPES and _is_mac(mac):
            macs[link.get('id')] = mac
            mtu = link.get('mtu')
            mtus[link.get('id')] = mtu if isinstance(mtu, int) and \
                mtu >= 68 else 0
    nics, routes = [], []
    for net in network_data.get('networks') or []:
        link = net.get('link')
        if link not in macs:
            continue
        mac, mtu = macs[link], mtus[link]
        if net.get('type') == 'ipv4_dhcp':
            nics.append('%s,%d,dhcp,-' % (mac, mtu))
        elif net.get('type') == 'ipv4':
            try:
                iface = ipaddress.IPv4Interface(
                    '%s/%s' % (net['ip_address'], net['netmask']))
            except (KeyError, ValueError):
                continue
            nics.append('%s,%d,static,%s' % (mac, mtu, iface.with_prefixlen))
            for route in net.get('routes') or []:
                try:
                    dest = ipaddress.IPv4Network(
                        '%s/%s' % (route['network'], route['netmask']))
                    gateway = ipaddress.IPv4Address(route['gateway'])
                except (KeyError, ValueError):
                    continue
                routes.append('%s,%s,%s' % (mac, dest.with_prefixlen,
                                            gateway))
    return nics, routes


def _is_mac(mac):
    parts = mac.split(':')
    return len(parts) == 6 and all(
        len(p) == 2 and all(c in '0123456789abcdef' for c in p)
        for p in parts)


def _login_keys(files):
    meta = _json(files, META_DATA)
    if not isinstance(meta, dict):
        return []
    public_keys = meta.get('public_keys')
    if not isinstance(public_keys, dict) or not public_keys:
        return []
    if not _user_data_keeps_default_user(files.get(USER_DATA)):
        return []
    for path in VENDOR_DATA:
        vendor = _json(files, path)
        if vendor and _has_cloud_config(vendor):
            return []
    keys = []
    for key in public_keys.values():
        # One line of printable characters each: anything else is not a
        # key, and would not be one line of the hook's input.
        if isinstance(key, str) and key.strip().isprintable() and \
                key.strip():
            keys.append(key.strip())
    return keys


def _has_cloud_config(vendor):
    if not isinstance(vendor, dict):
        return bool(vendor)
    return any(k == 'cloud-init' or
               (isinstance(v, dict) and 'cloud-init' in v)
               for k, v in vendor.items())


def _user_data_keeps_default_user(user_data):
    """Whether the user data leaves the default user and its keys as is."""
    if not user_data:
        return True
    if isinstance(user_data, str):
        user_data = user_data.encode('utf-8')
    if user_data[:2] == b'\x1f\x8b':
        try:
            user_data = gzip.decompress(user_data)
        except (OSError, EOFError):
            return False
    text = user_data.decode('utf-8', 'replace')
    if text.startswith('#!'):
        return True
    if not text.startswith('#cloud-config'):
        # MIME, #include, boothooks, jinja: cloud-init decides.
        return False
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    if config is None:
        return True
    return isinstance(config, dict) and not (_KEYS_DECIDED_BY & set(config))
