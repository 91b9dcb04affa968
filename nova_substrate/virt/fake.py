"""FakeSubstrateDriver: many simulated substrate hosts in one process.

Built on Nova's fake driver (no hypervisor), for scheduler tests at
scale. It honours ``[substrate] pools`` as read when the driver starts,
so each compute service started after setting the option gets its own
pools. It reports them through the same stats and traits as
SubstrateDriver, "activates" an instance of a pool's key by taking one of
its ready substrates, and refills the pool at the next resource update,
as the real driver's upkeep does in the background.
"""

import contextlib
import threading
import time

from oslo_log import log as logging

from nova import context as nova_context
from nova import exception as nova_exception
from nova.image import glance
from nova import objects
from nova.virt import fake

from nova_substrate import conf as substrate_conf
from nova_substrate import notifications
from nova_substrate import substrate_key
from nova_substrate.virt import reporting

LOG = logging.getLogger(__name__)
CONF = substrate_conf.CONF

# The pool memory a simulated substrate takes.
FAKE_SUBSTRATE_MB = 64


class FakeSubstrateDriver(fake.MediumFakeDriver):

    def __init__(self, virtapi, read_only=False):
        substrate_conf.validate(CONF)
        super().__init__(virtapi, read_only)
        self.pools = [substrate_conf.parse_pool_entry(e)
                      for e in CONF.substrate.pools]
        self.budget_mb = CONF.substrate.memory_budget_mb
        #: key -> (target count, ready count)
        self.keys = {}
        self._resolved = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        self.activation_log = notifications.ActivationLog(
            CONF.substrate.activation_log)

    def _resolve_pools(self):
        """Keys of the configured pools whose image and flavor exist."""
        context = nova_context.get_admin_context()
        for image_id, flavor_ref, count in self.pools:
            if (image_id, flavor_ref) in self._resolved:
                continue
            try:
                image = glance.API().get(context, image_id)
                try:
                    flavor = objects.Flavor.get_by_flavor_id(context,
                                                             flavor_ref)
                except nova_exception.FlavorNotFound:
                    flavor = objects.Flavor.get_by_name(context, flavor_ref)
            except Exception as e:
                LOG.debug('Pool %s:%s not resolved yet: %s', image_id,
                          flavor_ref, e)
                continue
            key = substrate_key.substrate_key(
                objects.ImageMeta.from_dict(image), flavor)
            with self._lock:
                target = max(count, self.keys.get(key, (0, 0))[0])
                self.keys[key] = (target, target)
            self._resolved.add((image_id, flavor_ref))

    def ready_by_key(self):
        with self._lock:
            return {key: ready for key, (_t, ready) in self.keys.items()}

    def refill(self):
        with self._lock:
            self.keys = {k: (t, t) for k, (t, _r) in self.keys.items()}

    def take(self, key):
        """Take one ready substrate of key; False if there is none."""
        with self._lock:
            target, ready = self.keys.get(key, (0, 0))
            if ready <= 0:
                return False
            self.keys[key] = (target, ready - 1)
            return True

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        started = time.monotonic()
        super().spawn(context, instance, image_meta, injected_files,
                      admin_password, allocations, network_info,
                      block_device_info, power_on, accel_info)
        if getattr(self._local, 'tracking_only', False) or \
                not substrate_key.wants_substrate(instance.flavor):
            return
        key = substrate_key.substrate_key(image_meta, instance.flavor)
        # As SubstrateDriver: an instance not powered on is not activated.
        activated = power_on and self.take(key)
        if activated:
            reason = None
        elif not power_on:
            reason = 'the instance is not to be powered on'
        else:
            reason = 'this host holds no substrate %s' % key
        notifications.report_spawn(
            context, self.activation_log, instance, key,
            time.monotonic() - started,
            timings={'ready_s': 0.0} if activated else None, reason=reason)

    # FakeDriver spawns an instance again to track it when it arrives by a
    # migration, or when a hard reboot finds it missing. The real driver
    # moves or restarts the guest then: nothing is activated or recorded.

    @contextlib.contextmanager
    def _tracking_only(self):
        self._local.tracking_only = True
        try:
            yield
        finally:
            self._local.tracking_only = False

    def finish_migration(self, *args, **kwargs):
        with self._tracking_only():
            return super().finish_migration(*args, **kwargs)

    def post_live_migration_at_destination(self, *args, **kwargs):
        with self._tracking_only():
            return super().post_live_migration_at_destination(*args,
                                                              **kwargs)

    def reboot(self, *args, **kwargs):
        with self._tracking_only():
            return super().reboot(*args, **kwargs)

    def get_available_resource(self, nodename):
        self._resolve_pools()
        self.refill()
        data = super().get_available_resource(nodename)
        ready = self.ready_by_key()
        data.setdefault('stats', {}).update(reporting.pool_stats(
            ready, FAKE_SUBSTRATE_MB * sum(ready.values()), self.budget_mb))
        return data

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename, allocations)
        reporting.update_traits(provider_tree, nodename, self.ready_by_key())
