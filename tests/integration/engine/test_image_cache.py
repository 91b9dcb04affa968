"""Boot working-set image caches on real libvirt/QEMU, Debian guest.

The Debian test guest's root disk (qcow2) is served by a real NBD server
(qemu-storage-daemon) standing for the remote image store; what it sends
is counted at its end. Guests boot on the chain
remote base <- cache <- link <- instance overlay.
"""

import grp
import json
import os
import subprocess
import threading
import time
import uuid

import libvirt

from nova_substrate.bench import remote as remote_mod
from nova_substrate.engine import files
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import imagecache
from nova_substrate.engine import qemuimg
from nova_substrate.engine import warmup
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain
from tests.integration import base

MiB = 2 ** 20
QUOTA = 96 * MiB
BOOT_TIMEOUT = 240


class ImageCacheTestCase(base.LibvirtTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest = guests.get_guest('debian', cache_dir=base.GUEST_CACHE)
        # A storage network's bandwidth: copy-on-read fills a cache no
        # faster than the remote delivers.
        cls.remote = remote_mod.NBDRemote(cls.guest.disk, cls.work,
                                          bandwidth_mbps=800).start()
        cls.addClassCleanup(cls.remote.stop)
        cls.group = grp.getgrnam('libvirt-qemu').gr_gid

    def manager(self, quota=QUOTA):
        root = os.path.join(self.work, 'caches-' + uuid.uuid4().hex[:6])
        manager = imagecache.CacheManager(
            root, os.path.join(self.work, 'records'), quota,
            socket_group=self.group)
        self.addCleanup(manager.stop_all)
        watcher = imagecache.QuotaWatcher(manager).start()
        self.addCleanup(watcher.stop)
        return manager

    def open_cache(self, manager, remote=None):
        image_id = 'debian-%s' % uuid.uuid4().hex[:8]
        return manager.open(image_id, 'identity-1', (remote or
                                                     self.remote).url,
                            'qcow2')

    def domain_xml(self, name, disk):
        return guest_domain.instance_xml(
            self.guest, name, str(uuid.uuid4()), 512, 1, disk,
            os.path.join(self.work, name + '.log'))

    def boot(self, manager, cache):
        """Boot an instance on the cache and wait until it is ready."""
        name = 'it-cache-%s' % uuid.uuid4().hex[:8]
        overlay = os.path.join(self.work, name + '.qcow2')
        manager.acquire(cache, name)
        self.addCleanup(manager.release, name)
        qemuimg.create_overlay(overlay, cache.link, 'qcow2')
        self.addCleanup(files.unlink_if_exists, overlay)
        dom = self.conn.createXML(self.domain_xml(name, overlay), 0)
        self.addCleanup(_destroy, dom)
        guest_agent.GuestAgent(dom).wait_booted(
            base.SETTINGS.hook_path, time.monotonic() + BOOT_TIMEOUT)
        return name, dom, overlay

    def test_first_boot_warms_second_reads_almost_nothing(self):
        manager = self.manager()
        cache = self.open_cache(manager)
        before = self.remote.bytes_served()
        name, dom, _ = self.boot(manager, cache)
        first = self.remote.bytes_served() - before
        warm = cache.allocated_bytes()
        # The boot's reads were copied into the cache, under its quota.
        self.assertGreater(warm, 10 * MiB)
        self.assertLess(warm, QUOTA)
        self.assertGreater(first, 10 * MiB)
        _destroy(dom)
        recorded = manager.record(cache)
        self.assertGreater(recorded.bytes, 10 * MiB)

        before = self.remote.bytes_served()
        self.boot(manager, cache)
        second = self.remote.bytes_served() - before
        self.assertLess(second, first * 0.05,
                        'second boot read %d bytes from the remote, the '
                        'first %d' % (second, first))

    def test_quota_stops_the_cache_growing(self):
        quota = 12 * MiB
        manager = self.manager(quota)
        cache = self.open_cache(manager)
        self.boot(manager, cache)
        self.assertTrue(cache.sealed)
        self.assertLessEqual(cache.allocated_bytes(), quota)
        # Sealed: further reads go to the remote and the cache stays put.
        size = cache.allocated_bytes()
        _read_all(cache.link, 'qcow2', 256 * MiB, 64 * MiB)
        self.assertEqual(size, cache.allocated_bytes())
        self.assertLessEqual(manager.working_set(cache.name).bytes, quota)

    def test_chain_and_snapshot(self):
        manager = self.manager()
        cache = self.open_cache(manager)
        name, dom, overlay = self.boot(manager, cache)
        # overlay -> link -> the cache's NBD export (cache -> remote).
        chain = json.loads(subprocess.run(
            ['qemu-img', 'info', '-U', '--backing-chain', '--output=json',
             overlay], check=True, capture_output=True, text=True).stdout)
        self.assertEqual([overlay, cache.link],
                         [layer['filename'] for layer in chain[:2]])
        self.assertEqual(cache.server.url, chain[1]['backing-filename'])
        self.assertEqual('raw', chain[2]['format'])
        root = libvirt_disk_chain(dom)
        self.assertEqual([overlay, cache.link], root[:2])
        self.assertIn(cache.server.socket, root[2])

        self.guest_run(dom, 'echo cached-chain > /root/marker; sync')
        dom.suspend()
        snapshot = os.path.join(self.work, name + '-snapshot.qcow2')
        self.addCleanup(files.unlink_if_exists, snapshot)
        subprocess.run(['qemu-img', 'convert', '-U', '-O', 'qcow2', overlay,
                        snapshot], check=True)
        # The snapshot alone holds everything the guest sees.
        subprocess.run(['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F',
                        'qcow2', overlay, snapshot], check=True,
                       capture_output=True)
        _destroy(dom)
        info = qemuimg.info(snapshot)
        self.assertNotIn('backing-filename', info)
        self.assertEqual(qemuimg.info(self.guest.disk)['virtual-size'],
                         info['virtual-size'])
        self.boot_from(snapshot, 'cached-chain')

    def boot_from(self, image, marker):
        name = 'it-snapboot-%s' % uuid.uuid4().hex[:8]
        overlay = os.path.join(self.work, name + '.qcow2')
        qemuimg.create_overlay(overlay, image, 'qcow2')
        self.addCleanup(files.unlink_if_exists, overlay)
        dom = self.conn.createXML(self.domain_xml(name, overlay), 0)
        self.addCleanup(_destroy, dom)
        guest_agent.GuestAgent(dom).wait_booted(
            base.SETTINGS.hook_path, time.monotonic() + BOOT_TIMEOUT)
        self.assertEqual(marker, self.guest_run(dom, 'cat /root/marker'))

    def test_eviction_refused_while_in_use(self):
        manager = self.manager()
        cache = self.open_cache(manager)
        name, dom, _ = self.boot(manager, cache)
        self.assertRaises(imagecache.CacheInUse, manager.evict, cache.name)
        self.assertEqual([], manager.age(max_unused_s=0.001))
        manager.budget_bytes = 1
        self.assertEqual([], manager.age(max_unused_s=0))
        self.assertTrue(cache.server.running())
        self.assertEqual('ok', self.guest_run(dom, 'cat /etc/hostname '
                                              '>/dev/null && echo ok'))
        _destroy(dom)
        manager.release(name)
        manager.record(cache)
        self.assertEqual([cache.name], manager.age(max_unused_s=0))
        self.assertFalse(os.path.exists(cache.directory))
        # The record outlives the cache: a new cache replays it.
        fresh = manager.open(cache.image_id, 'identity-1', self.remote.url,
                             'qcow2')
        before = self.remote.bytes_served()
        replayed = manager.replay(fresh)
        served = self.remote.bytes_served() - before
        self.assertGreater(replayed.bytes, 10 * MiB)
        self.assertGreaterEqual(fresh.allocated_bytes(), replayed.bytes)
        self.assertLess(served, replayed.bytes * 1.2)
        before = self.remote.bytes_served()
        self.boot(manager, fresh)
        self.assertLess(self.remote.bytes_served() - before,
                        replayed.bytes * 0.1)

    def test_warm_up_boot_records_the_working_set(self):
        manager = self.manager()
        cache = self.open_cache(manager)
        recorded = warmup.warm_by_boot(
            self.conn, manager, cache,
            self.domain_xml('unused', self.guest.disk), self.work,
            idle_s=5, timeout=BOOT_TIMEOUT)
        self.assertGreater(recorded.bytes, 10 * MiB)
        self.assertEqual(recorded.bytes,
                         manager.working_set(cache.name).bytes)
        self.assertEqual([], cache.users())
        self.assertEqual([], _warmup_domains(self.conn))
        self.assertEqual([], [f for f in os.listdir(self.work)
                              if f.startswith('substrate-warmup-')])

    def test_remote_gone_mid_boot(self):
        remote = remote_mod.NBDRemote(self.guest.disk, self.work).start()
        self.addCleanup(remote.stop)
        manager = self.manager()
        cache = self.open_cache(manager, remote)
        # Take the remote away once the boot has started reading.
        stopper = threading.Thread(target=_stop_when_read,
                                   args=(remote, 2 * MiB))
        stopper.start()
        self.addCleanup(stopper.join)
        e = self.assertRaises(
            imagecache.RemoteUnavailable, warmup.warm_by_boot, self.conn,
            manager, cache, self.domain_xml('unused', self.guest.disk),
            self.work, idle_s=5, timeout=BOOT_TIMEOUT)
        self.assertIn('no longer readable', str(e))
        self.assertIn(remote.url, str(e))
        self.assertEqual([], _warmup_domains(self.conn))
        self.assertFalse(os.path.exists(cache.directory))
        self.assertEqual([], [f for f in os.listdir(self.work)
                              if f.startswith('substrate-warmup-')])
        self.assertEqual([], manager.caches())
        # And a cache cannot be made on a remote that is not there.
        e = self.assertRaises(imagecache.RemoteUnavailable,
                              self.open_cache, manager, remote)
        self.assertIn(remote.url, str(e))
        self.assertEqual([], manager.caches())


def libvirt_disk_chain(dom):
    """The live root disk chain as libvirt sees it: files, then network."""
    from nova_substrate.engine import domainxml
    disk = domainxml.primary_disk(domainxml.parse(dom.XMLDesc(0)))
    chain = []
    node = disk
    while node is not None:
        source = node.find('source')
        if source is None:
            break
        if source.get('file'):
            chain.append(source.get('file'))
        else:
            host = source.find('host')
            chain.append('%s:%s' % (source.get('protocol'),
                                    host.get('socket') if host is not None
                                    else ''))
        node = node.find('backingStore')
    return chain


def _read_all(path, fmt, offset, length):
    subprocess.run(['qemu-io', '-r', '-f', fmt, '-c',
                    'read %d %d' % (offset, length), path], check=True,
                   capture_output=True)


def _stop_when_read(remote, nbytes, timeout=120):
    deadline = time.monotonic() + timeout
    while remote.bytes_served() < nbytes and time.monotonic() < deadline:
        time.sleep(0.05)
    remote.stop()


def _warmup_domains(conn):
    return [d.name() for d in conn.listAllDomains()
            if d.name().startswith('substrate-warmup-')]


def _destroy(dom):
    try:
        dom.destroy()
    except libvirt.libvirtError:
        pass


class HTTPRemoteTestCase(base.LibvirtTestCase):
    """A cache on an HTTP remote: files by image id, byte ranges."""

    def test_cache_reads_lazily_over_http(self):
        guest = guests.get_guest('debian', cache_dir=base.GUEST_CACHE)
        image_id = 'debian-%s' % uuid.uuid4().hex[:8]
        remote = remote_mod.HTTPRemote({image_id: guest.disk}).start()
        self.addCleanup(remote.stop)
        manager = imagecache.CacheManager(
            os.path.join(self.work, 'caches'),
            os.path.join(self.work, 'records'), QUOTA,
            socket_group=grp.getgrnam('libvirt-qemu').gr_gid)
        self.addCleanup(manager.stop_all)
        cache = manager.open(image_id, 'identity-1', remote.url(image_id),
                             'qcow2')
        overlay = os.path.join(self.work, 'http-overlay.qcow2')
        qemuimg.create_overlay(overlay, cache.link, 'qcow2')
        self.addCleanup(files.unlink_if_exists, overlay)
        # The first 16 MiB of the guest's disk, as the guest sees it.
        _read_all(overlay, 'qcow2', 0, 16 * MiB)
        served = remote.bytes_served()
        self.assertGreater(served, 0)
        self.assertLess(served, os.path.getsize(guest.disk) * 0.2)
        self.assertGreater(cache.allocated_bytes(), 0)
        # Read again: from the cache, nothing more from the remote.
        _read_all(overlay, 'qcow2', 0, 16 * MiB)
        self.assertEqual(served, remote.bytes_served())
        # What the chain shows equals the image.
        subprocess.run(['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F',
                        'qcow2', overlay, guest.disk], check=True,
                       capture_output=True)
