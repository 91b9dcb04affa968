"""Which substrates a host keeps: configured pools and observed demand.

A target is a substrate key with what it takes to build it (the image,
its kernel and ramdisk, the flavor) and the number of ready copies to keep.
Targets come from ``[substrate] pools`` and, with ``demand_pools``, from
the requests the host has seen. The pool keeper (keeper.py) builds and
refills them.
"""

import collections
import dataclasses
import functools
import threading
import time

from oslo_log import log as logging

from nova_substrate import conf as substrate_conf
from nova_substrate import substrate_key

LOG = logging.getLogger(__name__)

CONFIG = 'config'
DEMAND = 'demand'


@dataclasses.dataclass
class Source:
    """What a substrate of one key is built from."""
    image_meta: object          # nova.objects.ImageMeta
    flavor: object              # nova.objects.Flavor
    kernel_id: str = None
    ramdisk_id: str = None
    #: The image_* system metadata an instance of the image carries (what
    #: Nova's instance.image_meta is made from).
    image_sysmeta: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def key(self):
        return substrate_key.substrate_key(self.image_meta, self.flavor)


@dataclasses.dataclass
class Target:
    key: str
    source: Source
    count: int
    origin: str


@dataclasses.dataclass
class ConfiguredPool:
    image_id: str
    flavor: str                 # flavor id or name, as configured
    count: int
    source: Source = None       # known once the image and flavor are

    def matches(self, image_id, flavor):
        return (image_id == self.image_id and
                self.flavor in (flavor.flavorid, flavor.name))


class PoolTargets(object):
    """The targets of one host; safe to use from several threads."""

    def __init__(self, entries, demand_pools=True, demand_window=3600,
                 floor=2, ceiling=4):
        self.configured = [ConfiguredPool(*substrate_conf.parse_pool_entry(e))
                           for e in entries]
        self.demand_pools = demand_pools
        self.demand_window = demand_window
        self.floor, self.ceiling = floor, ceiling
        self._requests = collections.defaultdict(collections.deque)
        self._sources = {}
        self._lock = threading.Lock()

    @classmethod
    def from_conf(cls, conf):
        sub = conf.substrate
        return cls(sub.pools, demand_pools=sub.demand_pools,
                   demand_window=sub.demand_window,
                   floor=sub.substrates_per_key,
                   ceiling=sub.max_substrates_per_key)

    def learn(self, source):
        """Remember how to build source's key; fills configured pools."""
        with self._lock:
            self._sources.setdefault(source.key, source)
            for pool in self.configured:
                if pool.matches(source.image_meta.id, source.flavor):
                    pool.source = source

    def record_request(self, source, now=None):
        """A request for source's key was seen on this host.

        Without demand pools the request only teaches how to build the
        key (for a configured pool of it).
        """
        self.learn(source)
        if not self.demand_pools:
            return
        with self._lock:
            self._requests[source.key].append(now or time.time())

    def forget_image(self, image_id):
        """Drop what was learned of an image that was deleted or changed.

        Configured pools of it are resolved again (from the image as it
        is now); demand for its old keys ends.
        """
        with self._lock:
            for pool in self.configured:
                if pool.image_id == image_id:
                    pool.source = None
            for key in [k for k, src in self._sources.items()
                        if src.image_meta.id == image_id]:
                del self._sources[key]
                self._requests.pop(key, None)

    def unresolved(self):
        """Configured pools whose image or flavor is not known yet."""
        with self._lock:
            return [p for p in self.configured if p.source is None]

    def for_image(self, image_id):
        with self._lock:
            return [p for p in self.configured if p.image_id == image_id]

    def targets(self, now=None):
        """The targets to keep now, one per key (the larger count wins)."""
        now = now or time.time()
        found = {}
        with self._lock:
            for pool in self.configured:
                if pool.source is not None:
                    self._add(found, pool.source, pool.count, CONFIG)
            if self.demand_pools:
                for key, times in self._requests.items():
                    while times and times[0] < now - self.demand_window:
                        times.popleft()
                    if times:
                        count = min(self.ceiling, max(self.floor, len(times)))
                        self._add(found, self._sources[key], count, DEMAND)
            for key in [k for k, t in self._requests.items() if not t]:
                del self._requests[key]
        return list(found.values())

    @staticmethod
    def _add(found, source, count, origin):
        key = source.key
        if key not in found or found[key].count < count:
            found[key] = Target(key, source, count, origin)
