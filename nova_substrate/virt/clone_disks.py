"""Clone disks leaving their substrate's layer for Nova's base image.

An activated instance's disk starts as an overlay of its substrate's
frozen layer, which is an overlay of the image's ``_base`` file. Each
clone is recorded as a user of its layer (a marker in the pool), so the
layer is kept. A background job per clone streams the layer into the
clone's disk (engine/chain.py), after which the disk is an ordinary
overlay of ``_base``, and drops the marker. Operations that need the
ordinary chain (snapshot, resize, migration) wait for that job first.
"""

import os
import threading

from oslo_log import log as logging

from nova_substrate.engine import chain
from nova_substrate.engine import qemuimg

LOG = logging.getLogger(__name__)


class LayerRelease(object):
    """The clone disks of one host still on a layer, and their jobs."""

    def __init__(self, pool, get_connection, instances_path, timeout):
        self.pool = pool
        self.get_connection = get_connection
        self.instances_path = instances_path
        self.timeout = timeout
        self._jobs = {}
        self._lock = threading.Lock()

    def disk_of(self, instance_uuid):
        return os.path.join(self.instances_path, instance_uuid, 'disk')

    def start(self, instance_uuid, layer_id):
        """Take the clone's disk off layer_id in the background."""
        job = threading.Thread(target=self._release, daemon=True,
                               name='substrate-release-%s' % instance_uuid,
                               args=(instance_uuid, layer_id))
        with self._lock:
            self._jobs[instance_uuid] = job
        job.start()

    def finish(self, instance_uuid):
        """Return once the disk no longer depends on any layer."""
        self._join(instance_uuid)
        for layer_id in self.pool.layers_of(instance_uuid):
            self._release(instance_uuid, layer_id)

    def forget(self, instance_uuid):
        """The instance's disk is gone: its layers are no longer its."""
        self._join(instance_uuid)
        for layer_id in self.pool.layers_of(instance_uuid):
            self.pool.remove_layer_user(layer_id, instance_uuid)

    def resume(self):
        """After a restart: restart the jobs a stopped service left."""
        for layer_id in self.pool.layers():
            for user in self.pool.layer_users(layer_id):
                if self._on_layer(user, layer_id):
                    self.start(user, layer_id)
                else:
                    self.pool.remove_layer_user(layer_id, user)

    def user_alive(self, instance_uuid):
        return os.path.exists(self.disk_of(instance_uuid))

    def _on_layer(self, instance_uuid, layer_id):
        disk = self.disk_of(instance_uuid)
        return os.path.exists(disk) and chain.on_layer(
            disk, self.pool.layer_file(layer_id))

    def _join(self, instance_uuid):
        with self._lock:
            job = self._jobs.get(instance_uuid)
        if job is not None:
            job.join(self.timeout)

    def _release(self, instance_uuid, layer_id):
        disk = self.disk_of(instance_uuid)
        try:
            if self._on_layer(instance_uuid, layer_id):
                base = qemuimg.backing_file(self.pool.layer_file(layer_id))
                chain.flatten(
                    chain.domain_or_none(self.get_connection(),
                                         instance_uuid),
                    disk, base, qemuimg.info(base)['format'], self.timeout)
            self.pool.remove_layer_user(layer_id, instance_uuid)
            LOG.debug('Disk %s is off substrate layer %s', disk, layer_id)
        except Exception as e:
            # The marker stays: the layer is kept until this succeeds.
            LOG.warning('Could not take %s off substrate layer %s: %s',
                        disk, layer_id, e)
        finally:
            with self._lock:
                if self._jobs.get(instance_uuid) is threading.current_thread():
                    del self._jobs[instance_uuid]
