"""SubstrateDriver in Nova: activated when it can, booted when it cannot."""

import libvirt

from nova_substrate import notifications
from tests.functional import substrate_base


class SubstrateSpawnTest(substrate_base.SubstrateDriverTestCase):

    def test_substrate_flavor_is_activated_into_novas_domain(self):
        key = self.wait_for_substrate()

        server = self.wait_for_active(
            self.boot_server(flavor_id=self.substrate_flavor_id))

        record = self.spawn_record(server)
        self.assertEqual(notifications.ACTIVATED, record['mode'],
                         substrate_base.dump(record))
        self.assertEqual(key, record['key'])
        self.assertEqual(notifications.ACTIVATED,
                         self.instance_sysmeta(server)['substrate_spawn'])
        self.assertEqual([notifications.ACTIVATE_END],
                         [e for e, _p in self.substrate_events(server)])
        domain = self.domain_of(server)
        self.assertEqual('instance-%s' % server['id'], domain.name())
        self.assertEqual(server['id'], domain.UUIDString())
        self.assertTrue(domain.isPersistent())
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, domain.state()[0])
        # Identity from Nova's XML, not the substrate's.
        xml = domain.XMLDesc(0)
        self.assertIn("<entry name='uuid'>%s</entry>" % server['id'], xml)
        self.assertIn(self.instance_dir(server) + '/disk', xml)
        self.assertIn('guest_agent.0.instance-%s.sock' % server['id'], xml)
        self.assertIn('<kernel>%s/kernel</kernel>' % self.instance_dir(server),
                      xml)
        self.assertEqual(server['OS-EXT-SRV-ATTR:hostname'],
                         self.guest_hostname(server))
        # The disk leaves the substrate's layer for Nova's base image.
        self.wait_for_flattened(server)
        self._wait_for(lambda: not any(self.layer_users().values()), 30,
                       'the layer marker to go')
        # The pool is refilled.
        self.wait_for_substrate(key)

        self.delete_server(server)
        self.assertEqual([], [n for n in __import__('os').listdir(
            self.instances_path) if n.startswith(server['id'])])
