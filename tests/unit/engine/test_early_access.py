"""What the hook applies of a clone's instance data before cloud-init."""

import gzip
import json

import testtools

from nova_substrate.engine import early_access

MAC = 'FA:16:3E:00:00:01'
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKpO tenant@example'


def instance_data(user_data=None, keys=None, networks=None, links=None,
                  vendor=None):
    meta = {'uuid': 'u', 'public_keys': {'k': KEY} if keys is None else keys}
    network = {
        'links': links if links is not None else [
            {'id': 'tap1', 'type': 'ovs', 'ethernet_mac_address': MAC,
             'mtu': 1450}],
        'networks': networks if networks is not None else [
            {'id': 'network0', 'link': 'tap1', 'type': 'ipv4',
             'ip_address': '10.0.0.5', 'netmask': '255.255.255.0',
             'routes': [{'network': '0.0.0.0', 'netmask': '0.0.0.0',
                         'gateway': '10.0.0.1'},
                        {'network': '172.16.0.0', 'netmask': '255.255.0.0',
                         'gateway': '10.0.0.254'}]}],
    }
    files = {early_access.META_DATA: json.dumps(meta).encode(),
             early_access.NETWORK_DATA: json.dumps(network).encode()}
    if user_data is not None:
        files[early_access.USER_DATA] = user_data
    if vendor is not None:
        files[early_access.VENDOR_DATA[0]] = json.dumps(vendor).encode()
    return files


class NetworkTest(testtools.TestCase):

    def test_static_address_routes_and_mtu(self):
        fields = early_access.hook_fields(instance_data())
        self.assertEqual('fa:16:3e:00:00:01,1450,static,10.0.0.5/24',
                         fields['early_nics'])
        self.assertEqual('fa:16:3e:00:00:01,0.0.0.0/0,10.0.0.1 '
                         'fa:16:3e:00:00:01,172.16.0.0/16,10.0.0.254',
                         fields['early_routes'])

    def test_dhcp_subnet(self):
        fields = early_access.hook_fields(instance_data(networks=[
            {'id': 'n', 'link': 'tap1', 'type': 'ipv4_dhcp'}]))
        self.assertEqual('fa:16:3e:00:00:01,1450,dhcp,-',
                         fields['early_nics'])
        self.assertNotIn('early_routes', fields)

    def test_ipv6_and_vlan_links_are_left_to_cloud_init(self):
        fields = early_access.hook_fields(instance_data(
            links=[{'id': 'tap1', 'type': 'vlan',
                    'ethernet_mac_address': MAC}],
            networks=[{'id': 'n', 'link': 'tap1', 'type': 'ipv4',
                       'ip_address': '10.0.0.5',
                       'netmask': '255.255.255.0'}]))
        self.assertNotIn('early_nics', fields)
        fields = early_access.hook_fields(instance_data(networks=[
            {'id': 'n', 'link': 'tap1', 'type': 'ipv6',
             'ip_address': 'fd00::5', 'netmask': 'ffff:ffff::'}]))
        self.assertNotIn('early_nics', fields)

    def test_malformed_documents_give_nothing(self):
        fields = early_access.hook_fields(instance_data(networks=[
            {'id': 'n', 'link': 'tap1', 'type': 'ipv4',
             'ip_address': '10.0.0.5; reboot', 'netmask': '255.0.0.0'}]))
        self.assertNotIn('early_nics', fields)
        files = instance_data()
        files[early_access.NETWORK_DATA] = b'{not json'
        files[early_access.META_DATA] = b'['
        self.assertEqual({'login_keys': []},
                         early_access.hook_fields(files))
        self.assertEqual({'login_keys': []}, early_access.hook_fields(None))

    def test_an_invalid_mac_is_no_nic(self):
        fields = early_access.hook_fields(instance_data(links=[
            {'id': 'tap1', 'type': 'ovs',
             'ethernet_mac_address': 'fa:16:3e:00:00:01,x'}]))
        self.assertNotIn('early_nics', fields)


class LoginKeysTest(testtools.TestCase):

    def keys(self, **kwargs):
        return early_access.hook_fields(instance_data(**kwargs))['login_keys']

    def test_keys_without_user_data(self):
        self.assertEqual([KEY], self.keys())

    def test_scripts_and_plain_cloud_config_keep_the_default_user(self):
        self.assertEqual([KEY], self.keys(user_data=b'#!/bin/sh\ntrue\n'))
        self.assertEqual([KEY], self.keys(
            user_data=b'#cloud-config\nruncmd: [[touch, /x]]\n'))
        self.assertEqual([KEY], self.keys(user_data=gzip.compress(
            b'#cloud-config\nwrite_files: []\n')))

    def test_user_data_that_decides_about_users_gets_no_early_keys(self):
        for user_data in (b'#cloud-config\nusers: []\n',
                          b'#cloud-config\nsystem_info:\n  default_user:\n'
                          b'    name: other\n',
                          b'#cloud-config\ndisable_root: false\n',
                          b'#cloud-config\nallow_public_ssh_keys: false\n',
                          b'Content-Type: multipart/mixed; boundary="x"\n',
                          b'#include\nhttp://example.com/x\n',
                          b'#cloud-config\n: [\n',
                          b'\x1f\x8bnot gzip'):
            self.assertEqual([], self.keys(user_data=user_data), user_data)

    def test_vendor_cloud_config_gets_no_early_keys(self):
        self.assertEqual([], self.keys(
            vendor={'cloud-init': '#cloud-config\nusers: []\n'}))
        self.assertEqual([KEY], self.keys(vendor={}))

    def test_keys_that_are_not_one_printable_line_are_dropped(self):
        self.assertEqual([KEY], self.keys(keys={
            'a': KEY, 'b': 'ssh-rsa AAAA\nlogin_key=x', 'c': '', 'd': 7}))
        self.assertEqual([], self.keys(keys={}))
