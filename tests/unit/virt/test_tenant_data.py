"""What an activated clone is given of its instance, and when it cannot be."""

from unittest import mock

import testtools

from nova.network import model as network_model

from nova_substrate.virt import tenant_data


def network_info(dhcp, meta_key='enable_dhcp'):
    meta = {meta_key: '192.168.1.2'} if dhcp else {}
    subnet = network_model.Subnet(
        cidr='192.168.1.0/24', ips=[network_model.FixedIP(
            address='192.168.1.20')], **({'meta': meta} if meta else {}))
    return network_model.NetworkInfo([network_model.VIF(
        id='port-1', address='fa:16:3e:00:00:01',
        network=network_model.Network(id='net-1', subnets=[subnet]))])


class Instance(object):

    def __init__(self, key_data=None, user_data=None):
        self.key_data = key_data
        self.user_data = user_data


class UnservedTest(testtools.TestCase):

    NO_CLOUD_INIT = {'guest': {'cloud_init': 'absent'}}

    def test_a_guest_with_cloud_init_serves_everything(self):
        for state in ('done', 'disabled'):
            self.assertIsNone(tenant_data.unserved(
                {'guest': {'cloud_init': state}},
                Instance(key_data='ssh-ed25519 AAAA', user_data='eA=='),
                network_info(dhcp=False)))

    def test_without_cloud_init_nothing_to_serve_is_fine(self):
        self.assertIsNone(tenant_data.unserved(
            self.NO_CLOUD_INIT, Instance(), network_info(dhcp=True)))

    def test_without_cloud_init_each_need_is_named(self):
        reason = tenant_data.unserved(
            self.NO_CLOUD_INIT,
            Instance(key_data='ssh-ed25519 AAAA', user_data='eA=='),
            network_info(dhcp=False))
        self.assertEqual(
            "the substrate's image has no cloud-init to take the instance's "
            "a keypair and user-data and static addresses on 192.168.1.0/24",
            reason)

    def test_substrates_recorded_before_the_guest_was_count_as_without(self):
        self.assertIn('no cloud-init', tenant_data.unserved(
            {}, Instance(user_data='eA=='), None))


class InstanceDataTest(testtools.TestCase):

    @mock.patch('nova.api.metadata.base.InstanceMetadata')
    def test_what_cloud_init_reads_of_a_config_drive(self, metadata):
        metadata.return_value.metadata_for_config_drive.return_value = [
            ('ec2/2009-04-04/meta-data.json', b'{}'),
            ('ec2/latest/meta-data.json', b'{"ec2": 1}'),
            ('openstack/2012-08-10/meta_data.json', b'{}'),
            ('openstack/latest/meta_data.json', b'{"uuid": "u"}'),
            ('openstack/latest/user_data', b'#!/bin/sh\n'),
            ('openstack/latest/network_data.json', '{"links": []}'),
            ('openstack/content/0000', b'file'),
        ]
        instance = Instance()
        files = tenant_data.instance_data(
            instance, [('/etc/motd', b'file')], 'secret',
            network_info(dhcp=True))
        self.assertEqual({
            'ec2/latest/meta-data.json': b'{"ec2": 1}',
            'openstack/latest/meta_data.json': b'{"uuid": "u"}',
            'openstack/latest/user_data': b'#!/bin/sh\n',
            'openstack/latest/network_data.json': b'{"links": []}',
            'openstack/content/0000': b'file',
        }, files)
        metadata.assert_called_once_with(
            instance, content=[('/etc/motd', b'file')],
            extra_md={'admin_pass': 'secret'}, network_info=mock.ANY)

    def test_static_subnets(self):
        self.assertEqual(['192.168.1.0/24'],
                         tenant_data.static_subnets(network_info(False)))
        self.assertEqual([], tenant_data.static_subnets(network_info(True)))
        self.assertEqual([], tenant_data.static_subnets(
            network_info(True, meta_key='dhcp_server')))
        self.assertEqual([], tenant_data.static_subnets(None))
