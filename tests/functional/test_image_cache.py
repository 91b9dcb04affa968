"""Boot working-set image caches under Nova's services, real libvirt/QEMU.

The Debian test guest's disk image is in Glance (the harness's
GlanceFixture), and the same bytes are exported by a real NBD server
(qemu-storage-daemon) under the image's id: the remote protocol that
``[substrate_cache] remote_url`` names. Servers of a normal flavor boot
on the chain remote base <- cache <- instance overlay.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

from nova import context as nova_context
from nova import objects

from nova_substrate.bench import remote as remote_mod
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import imagecache
from nova_substrate.engine import qemuimg
from nova_substrate.testing import substrate_cloud

MiB = 2 ** 20
BOOT_TIMEOUT = 240


class ImageCacheBootTest(substrate_cloud.SubstrateDriverTestCase):

    GUEST = 'debian'
    # The Debian guest's disk is 2 GiB.
    FLAVOR_ROOT_GB = 2

    def setUp(self):
        self.cache_root = tempfile.mkdtemp(prefix='nova-substrate-caches-',
                                           dir='/var/tmp')
        # QEMU's user reaches the caches' sockets through it.
        os.chmod(self.cache_root, 0o755)
        self.addCleanup(shutil.rmtree, self.cache_root, ignore_errors=True)
        super().setUp()
        self.addCleanup(self.driver.boot_caches.manager.stop_all)

    def _configure_compute(self):
        super()._configure_compute()
        # Only the image cache is under test: no substrate pool.
        self.flags(pools=[], group='substrate')
        self.remote = remote_mod.NBDRemote(
            self.guest.disk, self.cache_root, export=self.disk_image_id,
            bandwidth_mbps=800).start()
        self.addCleanup(self.remote.stop)
        self.flags(enabled=True,
                   remote_url='nbd://127.0.0.1:%d/{image_id}'
                   % self.remote.port,
                   cache_path=os.path.join(self.cache_root, 'caches'),
                   record_path=os.path.join(self.cache_root, 'records'),
                   quota_mb=128,
                   group='substrate_cache')

    # -- helpers -------------------------------------------------------------

    @property
    def caches(self):
        return self.driver.boot_caches.manager

    def base_file(self):
        return os.path.join(self.instances_path, '_base',
                            hashlib.sha1(self.image_id.encode()).hexdigest())

    def boot_and_wait(self):
        server = self.boot_server(flavor_id=self.normal_flavor_id)
        server = self.wait_for_active(server)
        guest_agent.GuestAgent(self.domain_of(server)).wait_booted(
            self.driver.settings.hook_path,
            time.monotonic() + BOOT_TIMEOUT)
        return server

    def precache_image_on_host(self):
        """POST /os-aggregates/{id}/images (2.81) for the compute's host."""
        aggregate = self.admin_api.post_aggregate(
            {'aggregate': {'name': 'warm-hosts'}})
        self.admin_api.add_host_to_aggregate(aggregate['id'], 'compute')
        self.admin_api.api_post(
            '/os-aggregates/%s/images' % aggregate['id'],
            {'cache': [{'id': self.image_id}]}, check_response_status=[202])

    def host_stats(self):
        ctx = nova_context.get_admin_context()
        self.compute.manager.update_available_resource(ctx)
        node = objects.ComputeNodeList.get_all(ctx)[0]
        return node.stats

    # -- tests ---------------------------------------------------------------

    def test_boot_on_cache_snapshot_evict_prewarm(self):
        served = self.remote.bytes_served()
        server = self.boot_and_wait()
        read = self.remote.bytes_served() - served

        # The root disk is an overlay of the image's cache, and the image
        # was not downloaded: only the blocks the boot read crossed.
        [cache] = self.caches.caches_of(self.image_id)
        self.assertEqual(cache.link, self.disk_backing(server))
        self.assertFalse(os.path.exists(self.base_file()))
        self.assertEqual([server['id']], cache.users())
        image_bytes = os.path.getsize(self.guest.disk)
        self.assertGreater(read, 5 * MiB)
        self.assertLess(read, image_bytes * 0.4)
        self.assertGreater(cache.allocated_bytes(), 5 * MiB)
        self.assertLessEqual(cache.allocated_bytes(), 128 * MiB)

        # The scheduler hears of the warm cache.
        stats = self.host_stats()
        self.assertGreater(int(stats['substrate_cache.' + self.image_id]),
                           5 * MiB)

        # Neither eviction nor the periodic pass removes a cache in use.
        self.assertRaises(imagecache.CacheInUse, self.caches.evict,
                          cache.name)
        self.caches.budget_bytes = 1
        self.flags(max_unused_age=0, group='substrate_cache')
        ctx = nova_context.get_admin_context()
        self.driver.manage_image_cache(
            ctx, objects.InstanceList.get_by_host(ctx, 'compute'))
        self.assertTrue(os.path.exists(cache.link))
        self.assertTrue(cache.server.running())

        # A hard reboot recreates the domain on the same chain, without
        # fetching the image.
        self.server_action(server, 'reboot', {'type': 'HARD'})
        guest_agent.GuestAgent(self.domain_of(server)).wait_booted(
            self.driver.settings.hook_path, time.monotonic() + BOOT_TIMEOUT)
        self.assertEqual(cache.link, self.disk_backing(server))
        self.assertNotIn('link.qcow2', os.listdir(
            os.path.join(self.instances_path, '_base')))
        self.assertFalse(os.path.exists(self.base_file()))

        # A snapshot of an instance on the cached chain is complete.
        marker = 'cached-chain-%s' % uuid.uuid4().hex
        self.guest_run(server, 'echo %s > /root/marker; sync' % marker)
        held = cache.allocated_bytes()
        snapshot_id = self._create_image_and_wait(server)
        # The snapshot read the whole image without filling the cache.
        self.assertLess(cache.allocated_bytes(), held + 4 * MiB)
        snapshot = os.path.join(self.cache_root, 'snapshot.img')
        with open(snapshot, 'wb') as f:
            f.write(self.image_data(snapshot_id))
        info = qemuimg.info(snapshot)
        self.assertNotIn('backing-filename', info)
        self.assertEqual(qemuimg.info(self.guest.disk)['virtual-size'],
                         info['virtual-size'])
        raw = snapshot + '.raw'
        subprocess.run(['qemu-img', 'convert', '-O', 'raw', snapshot, raw],
                       check=True)
        found = subprocess.run(['grep', '-c', '-a', marker, raw],
                               capture_output=True, text=True).stdout
        os.unlink(raw)
        # In the file's block, and maybe in the journal too.
        self.assertGreaterEqual(int(found.strip() or 0), 1)

        # Deleting the server ends its lease; the cache can go now, and
        # its recorded working set stays.
        self.delete_server(server)
        self.assertEqual([], cache.users())
        self.caches.record(cache)
        self.assertTrue(self.caches.evict(cache.name))
        recorded = self.caches.working_set(cache.name)
        self.assertGreater(recorded.bytes, 5 * MiB)

        # Pre-warm (microversion 2.81) replays the record into a new
        # cache, still without downloading the image.
        served = self.remote.bytes_served()
        self.precache_image_on_host()
        self._wait_for(lambda: any(
            c.allocated_bytes() >= min(recorded.bytes,
                                       self.caches.seal_threshold(c))
            for c in self.caches.caches_of(self.image_id)),
            120, 'the cache to be pre-warmed')
        self.assertFalse(os.path.exists(self.base_file()))
        self.assertLess(self.remote.bytes_served() - served,
                        recorded.bytes * 1.3)

        # A boot on the pre-warmed cache reads almost nothing remotely.
        served = self.remote.bytes_served()
        server = self.boot_and_wait()
        self.assertLess(self.remote.bytes_served() - served, read * 0.1)
        self.delete_server(server)

    def test_prewarm_without_record_boots_the_image_once(self):
        self.flags(warmup_idle=5, group='substrate_cache')
        self.precache_image_on_host()

        def recorded():
            caches = self.caches.caches_of(self.image_id)
            return caches and self.caches.working_set(caches[0].name)
        self._wait_for(recorded, BOOT_TIMEOUT, 'a warm-up boot to record')
        [cache] = self.caches.caches_of(self.image_id)
        self.assertGreater(self.caches.working_set(cache.name).bytes,
                           5 * MiB)
        # The warm-up left no domain, overlay, lease or _base download.
        self._wait_for(lambda: not [
            d for d in self.conn.listAllDomains()
            if d.name().startswith('substrate-warmup-')],
            60, 'the warm-up domain to go')
        self.assertEqual([], cache.users())
        self.assertEqual([], [f for f in os.listdir(os.path.join(
            self.cache_root, 'caches', '.warmup'))])
        self.assertFalse(os.path.exists(self.base_file()))

        # Deleting the image purges its cache and its record at the next
        # periodic pass.
        ctx = nova_context.get_admin_context()
        self.glance.delete(ctx, self.image_id)
        self.driver.manage_image_cache(ctx, [])
        self.assertEqual([], self.caches.caches_of(self.image_id))
        self.assertIsNone(self.caches.working_set(cache.name))
        self.assertFalse(cache.server.running())

    def test_unreachable_remote_boots_from_base(self):
        self.remote.stop()
        server = self.boot_and_wait()
        self.assertEqual(self.base_file(), self.disk_backing(server))
        self.assertEqual([], self.caches.caches())
        self.delete_server(server)

    def guest_run(self, server, script):
        result = guest_agent.GuestAgent(self.domain_of(server)).run(
            '/bin/sh', ['-c', script], deadline=time.monotonic() + 30)
        self.assertEqual(0, result.exitcode, result.stderr)
        return result.stdout

    def _create_image_and_wait(self, server):
        self.api.post_server_action(server['id'], {
            'createImage': {'name': 'cached-snapshot'}})
        ctx = nova_context.get_admin_context()

        def uploaded():
            images = [i for i in self.glance.detail(ctx)
                      if i['name'] == 'cached-snapshot']
            return images and images[0]['status'] == 'active' and \
                self.image_data(images[0]['id'])
        self._wait_for(uploaded, 240, 'the snapshot to be uploaded')
        return [i for i in self.glance.detail(ctx)
                if i['name'] == 'cached-snapshot'][0]['id']
