"""Nova's image cache manager, told which base images substrates use.

A substrate's frozen layer is an overlay of the image's file in Nova's
``_base`` directory. No instance row names that image while only
substrates use it, so Nova's manager would age the file out from under
the layer. Images with a docked template count as in use here.
"""

from nova.virt.libvirt import imagecache


class SubstrateImageCacheManager(imagecache.ImageCacheManager):

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def _list_running_instances(self, context, all_instances):
        running = super()._list_running_instances(context, all_instances)
        used = running['used_images']
        for template in self.pool.templates():
            labels = template.meta.get('labels', {})
            for image_id in (labels.get('image_id'),
                             labels.get('kernel_id'),
                             labels.get('ramdisk_id')):
                if image_id:
                    local, remote, users = used.get(image_id, (0, 0, []))
                    used[image_id] = (local + 1, remote,
                                      users + ['substrate-' + template.key])
        return running
