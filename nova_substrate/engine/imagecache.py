"""Boot working-set image caches: chain, quota, warm-up, eviction.

After Razavi and Kielmann (SC'13). A host keeps, per image, a small
qcow2 cache of the blocks boots read, between the remote base image and
each instance's overlay:

    remote base  <-  cache (this module, served by cacheserver)
                 <-  link.qcow2 (an empty qcow2 naming the cache's socket)
                 <-  instance overlay

The link gives every overlay a backing *file*, as Nova's snapshot and
image code expect, while the data comes from the shared cache.

A cache fills by copy-on-read while instances boot, until it reaches its
quota; then it is sealed and stops growing. Its allocation order is the
boot's working set in read order, kept as a record that a later warm-up
replays. Instances take a lease on the cache before their overlay is
made and give it back when their disk is gone; a cache with a lease is
never evicted or purged (Nova's image cache once removed base files in
use, LP#1256838), whatever the budget or the image's fate.

Caches are keyed by image and by the image's identity (its checksum):
an image whose data changes gets a new cache, and the old one is purged
as soon as no instance uses it.
"""

import grp
import hashlib
import json
import os
import select
import shutil
import threading
import time

from oslo_log import log as logging

from nova_substrate.engine import cacheserver
from nova_substrate.engine import exception
from nova_substrate.engine import files
from nova_substrate.engine import qemuimg
from nova_substrate.engine import workingset

LOG = logging.getLogger(__name__)

CLUSTER_SIZE = 64 * 1024
# Copy-on-read goes on between the write-threshold event and the seal;
# sealing starts this far below the quota so the cache stays under it.
QUOTA_HEADROOM = 8 * 1024 * 1024
SUPPORTED_FORMATS = ('raw', 'qcow2')

RemoteUnavailable = cacheserver.RemoteUnavailable


class CacheInUse(exception.SubstrateError):
    """An instance's chain uses the cache; it cannot be removed."""


class UnsupportedImage(exception.SubstrateError):
    """The image cannot be read through a cache."""


def cache_name(image_id, identity):
    """The directory name of an image's cache for one image identity."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return '%s@%s' % (image_id, digest)


class ImageCache:
    """One cache directory."""

    def __init__(self, root, name):
        self.name = name
        self.image_id = name.split('@', 1)[0]
        self.directory = os.path.join(root, name)
        self.cache_file = os.path.join(self.directory, 'cache.qcow2')
        self.link = os.path.join(self.directory, 'link.qcow2')
        self.bulk_link = os.path.join(self.directory, 'bulk-link.qcow2')
        self.state_file = os.path.join(self.directory, 'state.json')
        self.leases = os.path.join(self.directory, 'users')
        self.server = cacheserver.CacheServer(self.directory, self.name)

    def exists(self):
        return os.path.exists(self.state_file)

    def state(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _update_state(self, **changes):
        state = self.state()
        state.update(changes)
        tmp = self.state_file + '.tmp'
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  'w') as f:
            json.dump(state, f)
        os.replace(tmp, self.state_file)

    @property
    def sealed(self):
        return bool(self.state().get('sealed'))

    @property
    def stale(self):
        return bool(self.state().get('stale'))

    def allocated_bytes(self):
        """Bytes the cache file holds on disk (data and metadata)."""
        try:
            return os.stat(self.cache_file).st_blocks * 512
        except FileNotFoundError:
            return 0

    def users(self):
        try:
            return sorted(os.listdir(self.leases))
        except FileNotFoundError:
            return []

    def last_used(self):
        try:
            return os.stat(self.leases).st_mtime
        except FileNotFoundError:
            return 0.0

    def describe(self):
        state = self.state()
        return {
            'name': self.name,
            'image_id': self.image_id,
            'bytes': self.allocated_bytes(),
            'quota_bytes': state.get('quota_bytes'),
            'image_bytes': state.get('virtual_size'),
            'sealed': bool(state.get('sealed')),
            'stale': bool(state.get('stale')),
            'serving': self.server.running(),
            'users': self.users(),
            'last_used': self.last_used(),
            'remote': state.get('remote_url'),
            'format': state.get('format'),
        }


class CacheManager:
    """The caches of one host, under one directory."""

    def __init__(self, root, record_root, quota_bytes, budget_bytes=0,
                 socket_group=0, replay_timeout=600.0):
        self.root = root
        self.record_root = record_root
        self.quota_bytes = quota_bytes
        self.budget_bytes = budget_bytes
        self.socket_group = socket_group
        self.replay_timeout = replay_timeout

    @classmethod
    def from_options(cls, options):
        """The manager the [substrate_cache] options describe."""
        try:
            group = grp.getgrnam(options.qemu_group).gr_gid
        except KeyError:
            raise exception.SubstrateError(
                '[substrate_cache] qemu_group: no group %r on this host'
                % options.qemu_group)
        return cls(options.cache_path, options.record_path,
                   options.quota_mb * 2 ** 20, options.budget_mb * 2 ** 20,
                   socket_group=group)

    # -- where things are --------------------------------------------

    def _ensure_dirs(self):
        for path, mode in ((self.root, 0o710), (self.record_root, 0o700)):
            os.makedirs(path, mode, exist_ok=True)
        # QEMU's group may reach the sockets below, and nothing else.
        os.chown(self.root, -1, self.socket_group)
        os.chmod(self.root, 0o710)

    def _locked(self):
        self._ensure_dirs()
        return files.locked(os.path.join(self.root, '.lock'))

    def record_path(self, name):
        return os.path.join(self.record_root, name + '.json')

    def caches(self):
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        caches = [ImageCache(self.root, n) for n in sorted(names)
                  if '@' in n and not n.startswith('.')]
        return [c for c in caches if os.path.isdir(c.directory)]

    def caches_of(self, image_id):
        return [c for c in self.caches() if c.image_id == image_id]

    def get(self, image_id, identity):
        cache = ImageCache(self.root, cache_name(image_id, identity))
        return cache if cache.exists() else None

    # -- making and serving ------------------------------------------

    def open(self, image_id, identity, remote_url, image_format):
        """The image's cache, created and served; ready for leases.

        Raises UnsupportedImage for formats the chain cannot hold and
        RemoteUnavailable when the remote base cannot be read; neither
        leaves anything behind.
        """
        if image_format not in SUPPORTED_FORMATS:
            raise UnsupportedImage('image %s is %s; caches hold %s images'
                                   % (image_id, image_format,
                                      ' and '.join(SUPPORTED_FORMATS)))
        name = cache_name(image_id, identity)
        cache = ImageCache(self.root, name)
        with self._locked():
            if cache.stale:
                raise UnsupportedImage('the cache of image %s is being '
                                       'purged' % image_id)
            if not cache.exists():
                self._create(cache, identity, remote_url, image_format)
            elif not cache.server.running():
                self._serve(cache)
        return cache

    def _create(self, cache, identity, remote_url, image_format):
        size = cacheserver.probe_remote(remote_url, image_format)
        shutil.rmtree(cache.directory, ignore_errors=True)
        os.makedirs(cache.directory, 0o710)
        try:
            os.chown(cache.directory, -1, self.socket_group)
            os.chmod(cache.directory, 0o710)
            os.makedirs(cache.leases, 0o700)
            # The cache's own header names the remote for people reading
            # it; the daemon gives the real chain explicitly.
            qemuimg.create_overlay(cache.cache_file, remote_url,
                                   image_format, size,
                                   cluster_size=CLUSTER_SIZE)
            for link, url in ((cache.link, cache.server.url),
                              (cache.bulk_link, cache.server.bulk_url)):
                qemuimg.create_overlay(link, url, 'raw', size)
                # libvirt reads an overlay's backing chain as QEMU's user.
                # A link holds no data, only an export's name.
                os.chown(link, -1, self.socket_group)
                os.chmod(link, 0o640)
            cache._update_state(image_id=cache.image_id, identity=identity,
                                remote_url=remote_url, format=image_format,
                                virtual_size=size,
                                quota_bytes=self.quota_bytes,
                                sealed=False, created=time.time())
            self._serve(cache)
        except Exception:
            cache.server.stop()
            shutil.rmtree(cache.directory, ignore_errors=True)
            raise
        LOG.info('Image cache %s created on %s (%s, quota %d MiB)',
                 cache.name, remote_url, image_format,
                 self.quota_bytes // 2**20)

    def _serve(self, cache):
        state = cache.state()
        cache.server.start(cache.cache_file, state['remote_url'],
                           state['format'],
                           copy_on_read=not state.get('sealed'),
                           socket_group=self.socket_group)

    # -- quota -------------------------------------------------------

    def check_quotas(self):
        """Seal every cache that reached its quota; the names sealed."""
        sealed = []
        for cache in self.caches():
            state = cache.state()
            if not state or state.get('sealed'):
                continue
            if cache.allocated_bytes() >= self.seal_threshold(cache):
                self.seal(cache)
                sealed.append(cache.name)
        return sealed

    def seal_threshold(self, cache):
        quota = cache.state().get('quota_bytes', self.quota_bytes)
        return quota - min(QUOTA_HEADROOM, quota // 4)

    def seal(self, cache):
        """Stop the cache growing, and record its working set."""
        if cache.server.running():
            cache.server.seal()
        cache._update_state(sealed=True)
        self.record(cache)
        LOG.info('Image cache %s sealed at %d MiB', cache.name,
                 cache.allocated_bytes() // 2**20)

    # -- working sets ------------------------------------------------

    def record(self, cache):
        """Save the cache's working set, unless a longer one is kept."""
        if cache.server.running():
            cache.server.flush()
        recorded = workingset.WorkingSet.from_cache_file(cache.name,
                                                         cache.cache_file)
        kept = self.working_set(cache.name)
        if kept is None or recorded.bytes >= kept.bytes:
            recorded.save(self.record_path(cache.name))
        return recorded

    def working_set(self, name):
        return workingset.WorkingSet.load(self.record_path(name))

    def replay(self, cache, working_set=None):
        """Warm the cache by reading a recorded working set, in order.

        Reads stop at the quota: the record's first extents that fit.
        Returns the working set replayed, or None without a record.
        """
        working_set = working_set or self.working_set(cache.name)
        if working_set is None:
            return None
        working_set = working_set.truncated(self.seal_threshold(cache))
        if not cache.sealed:
            workingset.replay(working_set, cache.server.url,
                              self.replay_timeout)
            self.check_quotas()
        return working_set

    # -- leases ------------------------------------------------------

    def acquire(self, cache, user):
        """Lease the cache to user (an instance) before its chain exists."""
        with self._locked():
            if not cache.exists() or cache.stale:
                raise UnsupportedImage('cache %s is gone' % cache.name)
            os.close(os.open(os.path.join(cache.leases, user),
                             os.O_WRONLY | os.O_CREAT, 0o600))
            os.utime(cache.leases)

    def release(self, user, image_id=None):
        """End user's leases; purged caches left unused go at once."""
        with self._locked():
            for cache in self.caches():
                if image_id and cache.image_id != image_id:
                    continue
                lease = os.path.join(cache.leases, user)
                if os.path.exists(lease):
                    os.unlink(lease)
                    os.utime(cache.leases)
                    if cache.stale and not cache.users():
                        self._remove(cache)

    def leased_to(self, user):
        return [c for c in self.caches() if user in c.users()]

    # -- removal -----------------------------------------------------

    def evict(self, name):
        """Remove a cache; CacheInUse while an instance's chain uses it.

        Its working-set record is kept, so a warm-up can replay it.
        """
        with self._locked():
            cache = ImageCache(self.root, name)
            if not os.path.isdir(cache.directory):
                return False
            users = cache.users()
            if users:
                raise CacheInUse('cache %s is used by %d instance(s) (%s); '
                                 'it is not removed'
                                 % (name, len(users), ', '.join(users)))
            self._remove(cache)
            return True

    def purge(self, image_id, keep_identity=None):
        """Forget an image's caches and records (image deleted/changed).

        Caches still in use are marked stale: no new instance uses them,
        and they go when their last user does. Returns the names removed.
        """
        keep = cache_name(image_id, keep_identity) if keep_identity else None
        removed = []
        with self._locked():
            for cache in self.caches_of(image_id):
                if cache.name == keep:
                    continue
                files.unlink_if_exists(self.record_path(cache.name))
                if cache.users():
                    cache._update_state(stale=True)
                    LOG.info('Image cache %s is stale; removed when its '
                             '%d user(s) are gone', cache.name,
                             len(cache.users()))
                else:
                    self._remove(cache)
                    removed.append(cache.name)
        return removed

    def age(self, max_unused_s, user_exists=None):
        """Evict caches unused for max_unused_s, and over-budget ones.

        user_exists(uuid), when given, drops leases of instances that no
        longer exist (a host that lost them while nova-compute was down).
        Returns the names evicted.
        """
        evicted = []
        now = time.time()
        with self._locked():
            caches = self.caches()
            if user_exists is not None:
                for cache in caches:
                    # A vanished user's lease ending is no use of the cache.
                    used_at = cache.last_used()
                    for user in cache.users():
                        if not user_exists(user):
                            LOG.info('Dropping lease of vanished instance '
                                     '%s on %s', user, cache.name)
                            files.unlink_if_exists(
                                os.path.join(cache.leases, user))
                            os.utime(cache.leases, (used_at, used_at))
            unused = [c for c in caches if not c.users()]
            for cache in unused:
                if cache.stale or (max_unused_s and
                                   now - cache.last_used() > max_unused_s):
                    self._remove(cache)
                    evicted.append(cache.name)
            if self.budget_bytes:
                total = sum(c.allocated_bytes() for c in self.caches())
                for cache in sorted((c for c in unused
                                     if c.name not in evicted),
                                    key=lambda c: c.last_used()):
                    if total <= self.budget_bytes:
                        break
                    total -= cache.allocated_bytes()
                    self._remove(cache)
                    evicted.append(cache.name)
        return evicted

    def _remove(self, cache):
        cache.server.stop()
        shutil.rmtree(cache.directory, ignore_errors=True)
        LOG.info('Image cache %s removed', cache.name)

    def resume(self):
        """After a host restart: serve every cache instances still use."""
        with self._locked():
            for cache in self.caches():
                if cache.users() and not cache.server.running():
                    try:
                        self._serve(cache)
                    except exception.SubstrateError as e:
                        LOG.error('Image cache %s cannot be served: %s',
                                  cache.name, e)

    def stop_all(self):
        with self._locked():
            for cache in self.caches():
                cache.server.stop()

    def warm_images(self):
        """{image_id: bytes} of the caches instances can use now."""
        warm = {}
        for cache in self.caches():
            if cache.exists() and not cache.stale:
                warm[cache.image_id] = max(warm.get(cache.image_id, 0),
                                           cache.allocated_bytes())
        return warm


class QuotaWatcher:
    """A thread sealing caches as they reach their quota.

    Copy-on-read runs inside the storage daemons; only a watcher outside
    them can stop it. Each growing cache's daemon is asked for an event
    when copy-on-read writes past the seal threshold of the cache file
    (qcow2 appends, so the file's end is its size), and the watcher seals
    the cache when the event arrives. A periodic size check backs the
    events up.
    """

    def __init__(self, manager, interval=0.5):
        self.manager = manager
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None
        self._watches = {}

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='image-cache-quota')
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                self._arm()
                self._wait_for_events()
                self.manager.check_quotas()
            except Exception:
                LOG.exception('Checking image cache quotas failed')
                self._stop.wait(self.interval)
        for events in self._watches.values():
            events.close()

    def _arm(self):
        """Watch every growing cache; forget the others."""
        growing = {c.name: c for c in self.manager.caches()
                   if c.exists() and not c.sealed and c.server.running()}
        for name in list(self._watches):
            if name not in growing:
                self._watches.pop(name).close()
        for name, cache in growing.items():
            if name in self._watches:
                continue
            try:
                self._watches[name] = cache.server.watch_writes_past(
                    self.manager.seal_threshold(cache))
            except exception.SubstrateError as e:
                LOG.debug('Cannot watch image cache %s: %s', name, e)

    def _wait_for_events(self):
        if not self._watches:
            self._stop.wait(self.interval)
            return
        readable, _, _ = select.select(list(self._watches.values()), [], [],
                                       self.interval)
        for events in readable:
            name = next(n for n, e in self._watches.items() if e is events)
            try:
                crossed = any(e['event'] == cacheserver.WRITE_THRESHOLD_EVENT
                              for e in events.read_events())
            except exception.SubstrateError:
                self._watches.pop(name).close()
                continue
            if crossed:
                self._watches.pop(name).close()
                self.manager.seal(ImageCache(self.manager.root, name))

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
