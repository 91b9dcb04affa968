"""SubstrateDriver in Nova: activated when it can, booted when it cannot."""

import os
import subprocess
import uuid

import libvirt

from nova_substrate.engine import guest as guest_agent
from nova_substrate import notifications
from nova_substrate import substrate_key
from nova_substrate.testing import libvirt_cloud as base
from nova_substrate.testing import substrate_cloud as substrate_base

TENANT_KEY = ('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtA+P7gqt8POEzYQeuN5nlT+'
              'P6Uo+2HLRdPmUF2FLM9 tenant@example')


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
        self.assertEqual([], [n for n in os.listdir(self.instances_path)
                              if n.startswith(server['id'])])

    def test_normal_flavor_is_booted_and_not_recorded(self):
        server = self.wait_for_active(
            self.boot_server(flavor_id=self.normal_flavor_id))

        self.assertIn(base.GUEST_READY_LINE,
                      self.wait_for_console(server, base.GUEST_READY_LINE))
        self.assertNotIn('substrate_spawn', self.instance_sysmeta(server))
        self.assertEqual([], self.substrate_events(server))
        self.assertEqual([], [r for r in self.driver.activation_log.read()
                              if r['instance_uuid'] == server['id']])

    def test_substrate_flavor_without_substrate_boots_then_demand_docks_one(
            self):
        # Not in [substrate] pools: the host learns of this key from the
        # request itself.
        flavor_id = self._create_flavor(
            name='m1.substrate-2cpu', memory_mb=self.FLAVOR_MEMORY_MB,
            vcpu=2, disk=self.FLAVOR_ROOT_GB, ephemeral=0, swap=0,
            extra_spec={substrate_key.ENABLED: 'true'})
        key = self.substrate_key(flavor_id)
        self.assertIsNone(self.driver.pool.get(key))

        first = self.wait_for_active(self.boot_server(flavor_id=flavor_id))

        record = self.spawn_record(first)
        self.assertEqual(notifications.BOOTED, record['mode'])
        self.assertIn('holds no substrate', record['reason'])
        self.assertEqual([notifications.BOOT_END],
                         [e for e, _p in self.substrate_events(first)])
        self.assertIn(base.GUEST_READY_LINE,
                      self.wait_for_console(first, base.GUEST_READY_LINE))

        # A demand pool keeps substrates_per_key (2) ready copies.
        self.wait_for_substrate(key, ready=2)
        second = self.wait_for_active(self.boot_server(flavor_id=flavor_id))
        self.assertEqual(notifications.ACTIVATED,
                         self.spawn_record(second)['mode'])
        self.assertEqual(2, self.guest_vcpus(second))

    def test_image_without_guest_agent_is_booted_with_the_reason(self):
        # The same disk, but an image that does not ask for the agent: no
        # hook could take an identity in its clones.
        self.disk_image_id = str(uuid.uuid4())
        image_id = self._register_guest_images(
            properties={'architecture': 'x86_64'})

        server = self.wait_for_active(self.boot_server(
            image_id=image_id, flavor_id=self.substrate_flavor_id))

        record = self.spawn_record(server)
        self.assertEqual(notifications.BOOTED, record['mode'])
        self.assertIn('does not declare a guest agent', record['reason'])
        self.assertIn(base.GUEST_READY_LINE,
                      self.wait_for_console(server, base.GUEST_READY_LINE))

    def test_keypair_on_a_substrate_without_cloud_init_is_booted(self):
        # The tiny guest has no cloud-init: a clone could not install the
        # tenant's key, so the instance boots, and the record says why.
        key = self.wait_for_substrate()
        self.assertEqual('absent', self.driver.pool.get(key).meta['guest'][
            'cloud_init'])
        self.api.post_keypair({'keypair': {
            'name': 'tenant', 'public_key': TENANT_KEY}})
        body = self._build_server(image_uuid=self.image_id,
                                  flavor_id=self.substrate_flavor_id,
                                  networks='none')
        body['key_name'] = 'tenant'

        server = self.wait_for_active(self.api.post_server({'server': body}))

        record = self.spawn_record(server)
        self.assertEqual(notifications.BOOTED, record['mode'])
        self.assertIn('has no cloud-init to take the instance\'s a keypair',
                      record['reason'])

    def test_failed_activation_boots_and_leaves_nothing_behind(self):
        key = self.wait_for_substrate()
        # The docked memory state is damaged after it was built: the
        # template and its ready copies, so that a refill racing with the
        # request cannot hand out a sound one.
        template = self.driver.pool.get(key)
        for path in [template.save_path] + self.ready_files(key):
            with open(path, 'r+b') as f:
                f.seek(os.path.getsize(path) // 2)
                f.write(os.urandom(4096))

        server = self.wait_for_active(
            self.boot_server(flavor_id=self.substrate_flavor_id))

        record = self.spawn_record(server)
        self.assertEqual(notifications.BOOTED, record['mode'])
        # Caught by the checksum or by QEMU, depending on where the bytes
        # landed.
        self.assertIn('activation failed', record['reason'])
        self.assertEqual([notifications.ACTIVATE_ERROR,
                          notifications.BOOT_END],
                         [e for e, _p in self.substrate_events(server)])
        self.assertIn(base.GUEST_READY_LINE,
                      self.wait_for_console(server, base.GUEST_READY_LINE))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_of(server).state()[0])
        self.assert_no_activation_leftovers(server)
        # The damaged substrate was removed, not handed out again (the
        # keeper may have built a new one since).
        rebuilt = self.driver.pool.get(key)
        self.assertTrue(rebuilt is None or rebuilt.meta['layer_id'] !=
                        template.meta['layer_id'])

    def test_activated_instance_gets_its_port_plugged_and_hot_plugged(self):
        # A port bound as a plain tap device: Nova's VIF driver creates the
        # tap on the host (as root), the clone gets it as a hot-plugged NIC.
        port = self.neutron.port_1
        self.neutron._ports[port['id']]['binding:vif_type'] = 'tap'
        tap = ('tap' + port['id'])[:14]
        self.addCleanup(subprocess.call, ['ip', 'link', 'del', tap],
                        stderr=subprocess.DEVNULL)
        self.wait_for_substrate()

        server = self.wait_for_active(self.boot_server(
            flavor_id=self.substrate_flavor_id,
            networks=[{'port': port['id']}]))

        self.assertEqual(notifications.ACTIVATED,
                         self.spawn_record(server)['mode'])
        xml = self.domain_of(server).XMLDesc(0)
        self.assertIn("<mac address='%s'/>" % port['mac_address'], xml)
        self.assertIn("<target dev='%s'" % tap, xml)
        self.assertTrue(os.path.exists('/sys/class/net/%s' % tap))
        # The guest has it, up (the hook confirmed it before activation
        # counted as done).
        agent = guest_agent.GuestAgent(self.domain_of(server))
        macs = {nic.get('hardware-address') for nic in
                agent.command('guest-network-get-interfaces')}
        self.assertIn(port['mac_address'], macs)

        self.delete_server(server)
        self.assertFalse(os.path.exists('/sys/class/net/%s' % tap))
