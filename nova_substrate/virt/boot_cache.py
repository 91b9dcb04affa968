"""Boot working-set image caches in the driver (engine/imagecache.py).

An instance of a raw or qcow2 image gets its root disk as an overlay on
the host's cache of the image, instead of on a whole copy of the image
downloaded into Nova's ``_base`` directory; only the blocks the boot
reads cross the network. Where the cache cannot serve (disabled, no
remote protocol, an image format it cannot hold, a rescue or unshelve
disk, a remote that does not answer), the driver takes Nova's normal
path, and says why in the log.

This module turns Nova's view (instances, images from Glance, the
aggregate pre-cache call, the image cache manager's periodic pass) into
engine calls. Instances lease the cache before their overlay exists and
give it back when their disks are destroyed.
"""

import os

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova.compute import task_states
from nova.compute import vm_states
from nova import exception as nova_exception

from nova_substrate.engine import exception as engine_exception
from nova_substrate.engine import imagecache
from nova_substrate.engine import qemuimg
from nova_substrate.engine import warmup

LOG = logging.getLogger(__name__)

GONE_STATUSES = ('deleted', 'killed', 'pending_delete', 'deactivated')


def image_identity(image):
    """What names an image's data: a new upload means a new cache."""
    return '%s:%s:%s' % (image.get('os_hash_value') or image.get('checksum'),
                         image.get('size'), image.get('disk_format'))


class BootCaches:

    def __init__(self, conf, image_api, connection_factory):
        self.conf = conf.substrate_cache
        self.image_api = image_api
        self.connection_factory = connection_factory
        self.manager = None
        self.watcher = None
        if self.conf.enabled:
            self.manager = imagecache.CacheManager.from_options(self.conf)

    @property
    def enabled(self):
        return self.manager is not None

    def start(self):
        if not self.enabled:
            return
        self.manager.resume()
        self.watcher = imagecache.QuotaWatcher(self.manager).start()

    def stop(self):
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    # -- spawn -------------------------------------------------------------

    def refusal(self, instance, booted_from_volume, suffix, images_type):
        """Why the instance's root disk cannot go on a cache, or None."""
        if not self.enabled:
            return 'image caches are disabled'
        if not self.conf.remote_url:
            return 'no remote protocol ([substrate_cache] remote_url)'
        if booted_from_volume:
            return 'booted from volume'
        if suffix:
            return 'a %s disk' % suffix.lstrip('.')
        if images_type not in ('qcow2', 'default'):
            return '[libvirt] images_type is %s' % images_type
        if (instance.task_state == task_states.RESIZE_FINISH or
                instance.vm_state == vm_states.SHELVED_OFFLOADED):
            return 'the disk comes from a snapshot or a migration'
        return None

    def make_root_disk(self, context, instance, image_id, disk_path, size):
        """Create the instance's root disk on the image's cache.

        Returns the cache's name, or None after logging why the normal
        path must be taken; nothing is left behind in that case.
        """
        try:
            image = self.image_api.get(context, image_id)
        except nova_exception.NovaException as e:
            LOG.info('Image cache not used for %s: %s', image_id, e,
                     instance=instance)
            return None
        try:
            cache = self.manager.open(
                image_id, image_identity(image), self.remote_url(image_id),
                image.get('disk_format'))
            self.manager.acquire(cache, instance.uuid)
        except engine_exception.SubstrateError as e:
            LOG.warning('Image cache not used for image %s, booting from '
                        '_base: %s', image_id, e, instance=instance)
            return None
        try:
            virtual = cache.state()['virtual_size']
            if size and size < virtual:
                # What Nova's own image backend says in this case.
                raise nova_exception.FlavorDiskSmallerThanImage(
                    flavor_size=size, image_size=virtual)
            qemuimg.create_overlay(disk_path, cache.link, 'qcow2',
                                   size or virtual)
        except Exception:
            self.manager.release(instance.uuid)
            raise
        LOG.info('Root disk on image cache %s (%d MiB warm)', cache.name,
                 cache.allocated_bytes() // 2 ** 20, instance=instance)
        return cache.name

    def release(self, instance_uuid):
        if self.enabled:
            self.manager.release(instance_uuid)

    def is_link(self, path):
        """Is path the link an overlay on one of the caches backs onto?"""
        return bool(self.enabled and path and
                    os.path.basename(path) == 'link.qcow2' and
                    os.path.dirname(os.path.dirname(path)) ==
                    self.manager.root)

    @staticmethod
    def bulk_link_of(link):
        """The link of the same cache that reads without copy-on-read."""
        return os.path.join(os.path.dirname(link), 'bulk-link.qcow2')

    def remote_url(self, image_id):
        return self.conf.remote_url.format(image_id=image_id)

    # -- pre-warm (os-aggregates images, microversion 2.81) ----------------

    def prewarm(self, context, image_id, warmup_domain):
        """Warm the image's cache: replay its record, else boot it once.

        Returns what was done, for the log; raises when the cache cannot
        be made or warmed.
        """
        image = self.image_api.get(context, image_id)
        cache = self.manager.open(image_id, image_identity(image),
                                  self.remote_url(image_id),
                                  image.get('disk_format'))
        replayed = self.manager.replay(cache)
        if replayed is not None:
            return 'replayed %d MiB of recorded working set' % (
                replayed.bytes // 2 ** 20)
        work_dir = os.path.join(self.conf.cache_path, '.warmup')
        os.makedirs(work_dir, 0o755, exist_ok=True)
        with warmup_domain(image) as domain_xml:
            recorded = warmup.warm_by_boot(
                self.connection_factory(), self.manager, cache, domain_xml,
                work_dir, self.conf.warmup_idle, self.conf.warmup_timeout)
        return 'warm-up boot read %d MiB' % (recorded.bytes // 2 ** 20)

    # -- periodic care -------------------------------------------------------

    def manage(self, context, instance_uuids):
        """Purge caches of deleted or changed images; age; keep budget."""
        if not self.enabled:
            return
        for image_id in sorted({c.image_id for c in self.manager.caches()}):
            self.check_image(context, image_id)
        self.record_all()
        # Leases not named by an instance uuid are warm-ups in progress.
        evicted = self.manager.age(
            self.conf.max_unused_age,
            user_exists=lambda u: (u in instance_uuids or
                                   not uuidutils.is_uuid_like(u)))
        if evicted:
            LOG.info('Image caches evicted: %s', ', '.join(evicted))

    def record_all(self):
        """Keep each served cache's working set (the longest seen)."""
        for cache in self.manager.caches():
            if cache.stale or not cache.server.running():
                continue
            try:
                self.manager.record(cache)
            except engine_exception.SubstrateError as e:
                LOG.warning('Working set of %s not recorded: %s',
                            cache.name, e)

    def check_image(self, context, image_id):
        try:
            image = self.image_api.get(context, image_id)
        except nova_exception.ImageNotFound:
            image = None
        except Exception as e:
            LOG.debug('Cannot check image %s: %s', image_id, e)
            return
        if image is None or image.get('status') in GONE_STATUSES:
            removed = self.manager.purge(image_id)
            LOG.info('Image %s is gone; its caches purged (%s)', image_id,
                     ', '.join(removed) or 'in use: removed when unused')
        else:
            removed = self.manager.purge(image_id,
                                         keep_identity=image_identity(image))
            if removed:
                LOG.info('Image %s changed; old caches purged: %s', image_id,
                         ', '.join(removed))

    def warm_images(self):
        return self.manager.warm_images() if self.enabled else {}
