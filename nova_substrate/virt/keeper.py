"""Pool upkeep: build missing templates, refill, purge, collect layers.

One thread per driver runs a round every ``[substrate] upkeep_interval``
seconds, and at once when woken (after an activation took a substrate).
Builds of one key never run twice at once: the keeper and an explicit
pre-warm (cache_image) share a per-key lock.
"""

import contextlib
import threading
import time

from oslo_log import log as logging

from nova_substrate.engine import exception as engine_exception

LOG = logging.getLogger(__name__)

# A key whose build failed is not retried for this long: a broken image
# would otherwise boot a guest every round.
BUILD_RETRY_S = 600.0

GONE = 'gone'
CHANGED = 'changed'
CURRENT = 'current'
UNKNOWN = 'unknown'


class PoolKeeper(object):
    """Keeps a SubstratePool at its targets.

    builder provides resolve(context, configured_pool) -> Source or None,
    build(context, target), image_state(context, labels) -> one of GONE,
    CHANGED, CURRENT, UNKNOWN, and layer_user_alive(domain_uuid).
    """

    def __init__(self, pool, targets, builder, interval, context_factory):
        self.pool = pool
        self.targets = targets
        self.builder = builder
        self.interval = interval
        self.context_factory = context_factory
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._key_locks = {}
        self._locks_lock = threading.Lock()
        self._failed = {}
        #: Rounds completed; tests and the command line wait on it.
        self.rounds = 0
        self._round_done = threading.Condition()
        self._paused = False
        self._in_round = False

    # -- the thread --------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='substrate-pool-keeper')
        self._thread.start()

    def stop(self):
        """Ask the thread to stop after its current step."""
        self._stopping.set()
        self._wakeup.set()

    def join(self, timeout=None):
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning('The substrate pool keeper did not stop within '
                            '%s s', timeout)

    def wake(self):
        self._wakeup.set()

    def pause(self):
        """No more rounds of its own until resume(); run_once still works.

        Returns once a round in progress is over.
        """
        with self._round_done:
            self._paused = True
            self._round_done.wait_for(lambda: not self._in_round)

    def resume(self):
        with self._round_done:
            self._paused = False
        self.wake()

    def wait_rounds(self, count, timeout):
        """Wait until count more rounds have completed; True if they did."""
        with self._round_done:
            goal = self.rounds + count
            return self._round_done.wait_for(lambda: self.rounds >= goal,
                                             timeout)

    def build_failed(self, key):
        """Whether the last build of key failed (and is not retried yet)."""
        return key in self._failed

    def _run(self):
        while not self._stopping.is_set():
            self._wakeup.clear()
            with self._round_done:
                self._in_round = not self._paused
            if self._in_round:
                try:
                    self.run_once(self.context_factory())
                except Exception:
                    LOG.exception('Substrate pool upkeep failed')
                with self._round_done:
                    self._in_round = False
                    self.rounds += 1
                    self._round_done.notify_all()
            self._wakeup.wait(self.interval)

    # -- one round ---------------------------------------------------------

    def run_once(self, context):
        for configured in self.targets.unresolved():
            if self._stopping.is_set():
                return
            try:
                source = self.builder.resolve(context, configured)
            except Exception as e:
                LOG.debug('Pool %s:%s cannot be resolved yet: %s',
                          configured.image_id, configured.flavor, e)
                continue
            if source is not None:
                self.targets.learn(source)
        for target in self.targets.targets():
            if self._stopping.is_set():
                return
            self.ensure(context, target)
        if self._stopping.is_set():
            return
        self.purge(context)
        self.pool.collect_layers(self.builder.layer_user_alive)

    def ensure(self, context, target, retry_failed=False):
        """Build target's template if missing, then fill it; True if held."""
        with self._key_lock(target.key):
            if self.pool.get(target.key) is None:
                failed_at = self._failed.get(target.key)
                if (failed_at and not retry_failed and
                        time.monotonic() - failed_at < BUILD_RETRY_S):
                    return False
                try:
                    self.builder.build(context, target)
                except Exception as e:
                    self._failed[target.key] = time.monotonic()
                    LOG.warning('Building the substrate %s (image %s, flavor '
                                '%s) failed; retrying in %d s: %s',
                                target.key, target.source.image_meta.id,
                                target.source.flavor.name, BUILD_RETRY_S, e,
                                exc_info=True)
                    return False
                self._failed.pop(target.key, None)
            try:
                self.pool.fill(target.key, target.count)
            except engine_exception.NoSubstrate:
                return False    # evicted or purged meanwhile
            return True

    def purge(self, context):
        """Remove templates whose image was deleted or changed."""
        for template in self.pool.templates():
            labels = template.meta.get('labels', {})
            if 'image_id' not in labels:
                continue
            state = self.builder.image_state(context, labels)
            if state in (GONE, CHANGED):
                self.targets.forget_image(labels['image_id'])
                with self._key_lock(template.key):
                    self.pool.remove(template.key)
                LOG.info('Removed substrate %s: its image %s is %s',
                         template.key, labels['image_id'], state)

    @contextlib.contextmanager
    def _key_lock(self, key):
        with self._locks_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            yield
