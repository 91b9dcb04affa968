"""Nova's services around SubstrateDriver on the host's libvirtd.

The compute runs ``substrate.SubstrateDriver`` (through the module the
project installs as nova/virt/substrate). Its pool lives in /dev/shm and
its layers under the test's instances_path, and ``[substrate] pools``
names the test's image with the substrate flavor, so the driver's pool
keeper builds a substrate of the tiny guest as soon as the flavor exists.
"""

import json
import os
import shutil
import tempfile
import time

from nova import context as nova_context
from nova import objects
from oslo_messaging.notify import _impl_test as messaging_test

from nova_substrate.engine import guest as guest_agent
from nova_substrate import substrate_key
from nova_substrate.testing import libvirt_cloud as base

POOL_ROOT = '/dev/shm/nova-substrate-functional'
SUBSTRATE_FLAVOR = 'm1.substrate'
NORMAL_FLAVOR = 'm1.normal'
# Building the tiny guest's substrate boots it once under TCG.
BUILD_TIMEOUT = 180.0
FLATTEN_TIMEOUT = 60.0


class SubstrateDriverTestCase(base.RealLibvirtTestCase):

    COMPUTE_DRIVER = 'substrate.SubstrateDriver'
    #: Ready substrates the configured pool keeps.
    POOL_COUNT = 1

    def setUp(self):
        os.makedirs(POOL_ROOT, mode=0o700, exist_ok=True)
        self.pool_path = tempfile.mkdtemp(dir=POOL_ROOT)
        self.addCleanup(shutil.rmtree, self.pool_path, ignore_errors=True)
        super().setUp()
        self.driver = self.compute.driver
        self.substrate_flavor_id = self._create_flavor(
            name=SUBSTRATE_FLAVOR, memory_mb=self.FLAVOR_MEMORY_MB,
            vcpu=self.FLAVOR_VCPUS, disk=self.FLAVOR_ROOT_GB, ephemeral=0,
            swap=0, extra_spec={substrate_key.ENABLED: 'true'})
        self.normal_flavor_id = self._create_flavor(
            name=NORMAL_FLAVOR, memory_mb=self.FLAVOR_MEMORY_MB,
            vcpu=self.FLAVOR_VCPUS, disk=self.FLAVOR_ROOT_GB, ephemeral=0,
            swap=0)

    def _configure_compute(self):
        super()._configure_compute()
        self.flags(pool_path=self.pool_path,
                   layer_path=os.path.join(self.instances_path,
                                           'substrate-layers'),
                   activation_log=os.path.join(self.instances_path,
                                               'activations.jsonl'),
                   pools=['%s:%s:%d' % (self.disk_image_id, SUBSTRATE_FLAVOR,
                                        self.POOL_COUNT)],
                   memory_budget_mb=1024,
                   upkeep_interval=1,
                   group='substrate')
        # oslo.messaging's in-memory driver: the test reads what the
        # driver sent.
        self.flags(driver=['test'], group='oslo_messaging_notifications')

    # -- the pool ----------------------------------------------------------

    def substrate_key(self, flavor_id=None):
        ctx = nova_context.get_admin_context()
        flavor = objects.Flavor.get_by_flavor_id(
            ctx, flavor_id or self.substrate_flavor_id)
        image = self.glance.show(ctx, self.image_id)
        return substrate_key.substrate_key(
            objects.ImageMeta.from_dict(image), flavor)

    def wait_for_substrate(self, key=None, ready=None,
                           timeout=BUILD_TIMEOUT):
        """Wait until the pool holds key's template and ready copies."""
        key = key or self.substrate_key()
        ready = self.POOL_COUNT if ready is None else ready

        def docked():
            if self.driver.keeper.build_failed(key):
                self.fail('building substrate %s failed (see the log)' % key)
            return (self.driver.pool.get(key) is not None and
                    self.driver.pool.ready_count(key) >= ready)
        self._wait_for(docked, timeout, 'substrate %s to be docked' % key)
        return key

    # -- what the driver recorded ------------------------------------------

    def spawn_record(self, server):
        records = [r for r in self.driver.activation_log.read()
                   if r['instance_uuid'] == server['id']]
        self.assertTrue(records, 'no spawn record for %s' % server['id'])
        return records[-1]

    def substrate_events(self, server):
        """(event type, payload) of the server's substrate notifications."""
        return [(m['event_type'], m['payload'])
                for _ctx, m, _prio, _retry in messaging_test.NOTIFICATIONS
                if m['event_type'].startswith('substrate.') and
                m['payload'].get('instance_uuid') == server['id']]

    def instance_sysmeta(self, server):
        ctx = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(
            ctx, server['id'], expected_attrs=['system_metadata'])
        return instance.system_metadata

    # -- the guest ---------------------------------------------------------

    def guest_hostname(self, server):
        agent = guest_agent.GuestAgent(self.domain_of(server))
        return agent.run('/bin/hostname', deadline=time.monotonic() + 30
                         ).stdout.strip()

    def guest_vcpus(self, server):
        agent = guest_agent.GuestAgent(self.domain_of(server))
        return sum(1 for cpu in agent.command('guest-get-vcpus')
                   if cpu['online'])

    def disk_backing(self, server):
        from nova_substrate.engine import qemuimg
        return qemuimg.backing_file(os.path.join(self.instance_dir(server),
                                                 'disk'))

    def wait_for_flattened(self, server):
        """Wait until the server's disk is an overlay of Nova's base file."""
        base_dir = os.path.join(self.instances_path, '_base')

        def flat():
            backing = self.disk_backing(server)
            return backing and os.path.dirname(backing) == base_dir
        self._wait_for(flat, FLATTEN_TIMEOUT,
                       'the disk of %s to be off its layer' % server['id'])

    def layer_users(self):
        return {layer: self.driver.pool.layer_users(layer)
                for layer in self.driver.pool.layers()}

    def pool_files(self, sub):
        return sorted(os.listdir(os.path.join(self.pool_path, sub)))

    def ready_files(self, key):
        ready = os.path.join(self.pool_path, 'ready', key)
        return sorted(os.path.join(ready, n) for n in os.listdir(ready))

    def assert_no_activation_leftovers(self, server):
        """Nothing of an activation remains beside a booted instance."""
        self.assertEqual([], self.pool_files('claimed'))
        self.assertEqual([], self.pool_files('tmp'))
        self.assertEqual(
            [], [layer for layer, users in self.layer_users().items()
                 if server['id'] in users])
        self.assertEqual(['console.log', 'disk', 'disk.info', 'kernel',
                          'ramdisk'],
                         sorted(os.listdir(self.instance_dir(server))))
        self.assertEqual(os.path.join(self.instances_path, '_base'),
                         os.path.dirname(self.disk_backing(server)))
        self.assertEqual(
            [server['id']],
            [d.UUIDString() for d in self.conn.listAllDomains()
             if d.UUIDString() == server['id']])


def dump(obj):
    return json.dumps(obj, indent=1, sort_keys=True, default=str)
