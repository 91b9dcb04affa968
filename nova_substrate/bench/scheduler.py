"""bench scheduler: what SubstrateFilter and SubstrateWeigher add per request.

Runs both through Nova's own handlers, as the scheduler does for each
instance (``HostFilterHandler.get_filtered_objects``, then
``HostWeightHandler.get_weighed_objects`` over the hosts the filter
kept), on Nova's ``HostState`` objects, for each number of hosts asked.
Every request is a new RequestSpec, so each pays what a real one pays
once: reading its flavor's extra specs and computing its substrate key.
Building the RequestSpec is not timed; Nova builds it for every request
anyway.

The hosts are a seeded, repeatable mix, each with 20 to 23 stats entries
like a real compute node's (instance, task, OS type and project counts,
and a substrate host's pool):

- HOLDING_FRACTION of them hold ready substrates of the request's key;
- SUBSTRATE_FRACTION run a substrate driver and hold substrates of other
  keys only;
- WARM_FRACTION have a warm boot cache of the request's image;
- the rest run no substrate driver.

Three kinds of request are measured, each as many times as asked:

- substrate: a substrate flavor some hosts hold a substrate for (the
  filter keeps those, the weigher weighs them); its numbers are the
  top-level ``median_us`` and ``p90_us``;
- substrate_fallback: a substrate flavor no host holds one for (every
  host is kept and weighed: the most the two can cost);
- normal: a flavor without substrate extra specs (the filter passes every
  host, the weigher looks for warm caches).

For scale, two references on the same hosts, through the same handlers,
with every host kept: a filter that keeps every host and a weigher that
weighs each 0 (what any filter and weigher cost at least), and Nova's
RAMWeigher, one of its default weighers.

The RequestSpecs have no context, so deciding whether a request is a new
build needs no BuildRequest lookup: nothing touches a database.
"""

import random
import statistics
import sys
import time
import uuid

from nova import objects
from nova.scheduler import filters as nova_filters
from nova.scheduler import host_manager
from nova.scheduler import weights as nova_weights
from nova.scheduler.weights import ram

from nova_substrate.scheduler import filters
from nova_substrate.scheduler import weights
from nova_substrate import substrate_key
from nova_substrate.virt import reporting

DEFAULT_HOSTS = (100, 1000)
DEFAULT_REQUESTS = 200
#: The time per request that the two should stay within at 1,000 hosts.
TARGET_US = 2000
#: Untimed requests run first for each host count and kind of request.
WARMUP = 20
SEED = 20240611

HOLDING_FRACTION = 0.05
SUBSTRATE_FRACTION = 0.25
WARM_FRACTION = 0.15
STATS_PER_HOST = 20

SUBSTRATE = 'substrate'
FALLBACK = 'substrate_fallback'
NORMAL = 'normal'
KINDS = (SUBSTRATE, FALLBACK, NORMAL)

IMAGE_ID = '0c7f3c2e-8a51-4d36-9b1e-5f2a7d4c6e90'
IMAGE_PROPERTIES = {'hw_qemu_guest_agent': 'yes', 'hw_machine_type': 'q35',
                    'os_distro': 'debian'}
#: Flavor sizes: the substrate kinds differ in size, so in key.
FLAVORS = {
    SUBSTRATE: dict(name='m1.substrate', flavorid='s1', memory_mb=512,
                    vcpus=1, extra_specs={'substrate:enabled': 'true',
                                          'hw:cpu_policy': 'shared'}),
    FALLBACK: dict(name='m2.substrate', flavorid='s2', memory_mb=1024,
                   vcpus=2, extra_specs={'substrate:enabled': 'true',
                                         'hw:cpu_policy': 'shared'}),
    NORMAL: dict(name='m1.small', flavorid='2', memory_mb=512, vcpus=1,
                 extra_specs={'hw:cpu_policy': 'shared'}),
}

MEASURED = (
    'Microseconds per request of SubstrateFilter then SubstrateWeigher, '
    "each through Nova's handler (HostFilterHandler.get_filtered_objects, "
    'then HostWeightHandler.get_weighed_objects over the hosts kept), on '
    "Nova's HostState objects; a new RequestSpec per request, so the "
    'substrate key is computed each time. Top-level medians and p90s are '
    'the "substrate" kind\'s.')


class _KeepAll(nova_filters.BaseHostFilter):
    """A filter that costs nothing: what Nova's handler costs."""

    def filter_all(self, filter_obj_list, spec_obj):
        return filter_obj_list


class _WeighZero(nova_weights.BaseHostWeigher):
    """A weigher that costs nothing: what Nova's handler costs."""

    def _weigh_object(self, host_state, weight_properties):
        return 0


def request_spec(kind):
    """A new RequestSpec of a kind, as the scheduler gets for a request."""
    values = dict(FLAVORS[kind], root_gb=1, ephemeral_gb=0, swap=0)
    values['extra_specs'] = dict(values['extra_specs'])
    return objects.RequestSpec(
        flavor=objects.Flavor(**values),
        image=objects.ImageMeta.from_dict(
            {'id': IMAGE_ID, 'properties': dict(IMAGE_PROPERTIES)}),
        instance_uuid=str(uuid.uuid4()), scheduler_hints={},
        num_instances=1)


def request_key(kind):
    spec = request_spec(kind)
    return substrate_key.substrate_key(spec.image, spec.flavor)


def _hex(rng, length):
    return '%0*x' % (length, rng.getrandbits(length * 4))


def _nova_stats(rng, projects):
    """The stats Nova's resource tracker reports for a compute node."""
    active = rng.randint(0, 30)
    stats = {'num_instances': active + 1, 'num_vm_active': active,
             'num_vm_building': 1, 'num_task_None': active,
             'num_task_spawning': 1, 'num_os_type_linux': active,
             'num_os_type_None': 1, 'io_workload': rng.randint(0, 3),
             'failed_builds': 0}
    for project in rng.sample(projects, 3):
        stats['num_proj_' + project] = rng.randint(1, 10)
    return {name: str(value) for name, value in stats.items()}


def make_hosts(count, key, image_id=IMAGE_ID, seed=SEED):
    """count HostStates: the mix of the module's docstring."""
    rng = random.Random(seed)
    projects = [_hex(rng, 32) for _ in range(20)]
    other_keys = [_hex(rng, 32) for _ in range(40)]
    other_images = [str(uuid.UUID(int=rng.getrandbits(128)))
                    for _ in range(20)]
    aggregates = [
        objects.Aggregate(id=1, name='az1',
                          metadata={'availability_zone': 'az1'}),
        objects.Aggregate(id=2, name='az2',
                          metadata={'availability_zone': 'az2'}),
        objects.Aggregate(id=3, name='ssd', metadata={'ssd': 'true'}),
    ]
    n_holding = max(1, round(count * HOLDING_FRACTION))
    n_substrate = round(count * SUBSTRATE_FRACTION)
    # The warm caches are spread over holders and other hosts alike.
    warm = set(rng.sample(range(count), round(count * WARM_FRACTION)))
    cell_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
    hosts = []
    for i in range(count):
        name = 'compute-%05d' % i
        state = host_manager.HostState(name, name, cell_uuid)
        state.uuid = str(uuid.UUID(int=rng.getrandbits(128)))
        state.total_usable_ram_mb = 262144
        state.free_ram_mb = rng.randint(0, 262144)
        state.free_disk_mb = rng.randint(0, 4096) * 1024
        state.vcpus_total = 64
        state.vcpus_used = rng.randint(0, 64)
        state.num_io_ops = rng.randint(0, 3)
        state.aggregates = [aggregates[0 if i % 2 else 1]] + (
            [aggregates[2]] if i % 5 == 0 else [])
        stats = _nova_stats(rng, projects)
        ready = {}
        if i < n_holding:
            ready[key] = rng.randint(1, 4)
        if i < n_holding + n_substrate:
            for other in rng.sample(other_keys, rng.randint(2, 4)):
                ready[other] = rng.randint(0, 4)
            stats.update(reporting.pool_stats(ready, 1536, 4096))
            for image in rng.sample(other_images, 2):
                stats[reporting.CACHE_STAT_PREFIX + image] = '52428800'
        if i in warm:
            stats[reporting.CACHE_STAT_PREFIX + image_id] = '67108864'
        # More projects bring every host to the same number of entries.
        for project in projects:
            if len(stats) >= STATS_PER_HOST:
                break
            stats.setdefault('num_proj_' + project, '1')
        state.stats = stats
        state.num_instances = int(stats['num_instances'])
        hosts.append(state)
    # The scheduler gets them in no particular order.
    rng.shuffle(hosts)
    return hosts


def _percentile(values, pct):
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method='inclusive')[pct - 1]


def _us(seconds):
    return round(seconds * 1e6, 1)


class SchedulerBench(object):

    def __init__(self, host_counts=DEFAULT_HOSTS,
                 requests=DEFAULT_REQUESTS, progress=None):
        self.host_counts = list(host_counts)
        self.requests = requests
        self.say = progress or (lambda msg: None)
        self.filter_handler = nova_filters.HostFilterHandler()
        self.weight_handler = nova_weights.HostWeightHandler()
        self.filters = [filters.SubstrateFilter()]
        self.weighers = [weights.SubstrateWeigher()]

    def schedule(self, hosts, spec):
        """One request: (filter seconds, weigher seconds, hosts kept)."""
        clock = time.perf_counter
        t0 = clock()
        kept = self.filter_handler.get_filtered_objects(
            self.filters, hosts, spec, 0)
        t1 = clock()
        self.weight_handler.get_weighed_objects(self.weighers, kept, spec)
        t2 = clock()
        return t1 - t0, t2 - t1, len(kept)

    def reference(self, hosts, timed):
        """Median seconds of timed(spec), one new spec per request."""
        specs = [request_spec(NORMAL) for _ in range(WARMUP + self.requests)]
        times = []
        for spec in specs:
            t0 = time.perf_counter()
            timed(spec)
            times.append(time.perf_counter() - t0)
        return statistics.median(times[WARMUP:])

    def references(self, hosts):
        keep_all, weigh_zero = [_KeepAll()], [_WeighZero()]
        ram_weigher = [ram.RAMWeigher()]

        def floor(spec):
            kept = self.filter_handler.get_filtered_objects(
                keep_all, hosts, spec, 0)
            self.weight_handler.get_weighed_objects(weigh_zero, kept, spec)

        def ram_weight(spec):
            self.weight_handler.get_weighed_objects(ram_weigher, hosts, spec)

        return {'handlers_floor_median_us': _us(self.reference(hosts,
                                                               floor)),
                'ram_weigher_median_us': _us(self.reference(hosts,
                                                            ram_weight))}

    def measure(self, hosts, kind):
        specs = [request_spec(kind)
                 for _ in range(WARMUP + self.requests)]
        for spec in specs[:WARMUP]:
            self.schedule(hosts, spec)
        filt, weigh, total = [], [], []
        for spec in specs[WARMUP:]:
            f, w, kept = self.schedule(hosts, spec)
            filt.append(f)
            weigh.append(w)
            total.append(f + w)
        return {
            'median_us': _us(statistics.median(total)),
            'p90_us': _us(_percentile(total, 90)),
            'filter_median_us': _us(statistics.median(filt)),
            'weigh_median_us': _us(statistics.median(weigh)),
            # The same for every request of a kind: the hosts do not
            # change, and each request is a new one.
            'kept_hosts': kept,
        }

    def run(self):
        key = request_key(SUBSTRATE)
        kinds = {kind: {'median_us': [], 'p90_us': [],
                        'filter_median_us': [], 'weigh_median_us': [],
                        'kept_hosts': []} for kind in KINDS}
        holding = []
        references = {'handlers_floor_median_us': [],
                      'ram_weigher_median_us': []}
        for count in self.host_counts:
            hosts = make_hosts(count, key)
            holding.append(sum(
                1 for h in hosts
                if reporting.ready_from_stats(h.stats).get(key, 0) > 0))
            for kind in KINDS:
                r = self.measure(hosts, kind)
                for name, value in r.items():
                    kinds[kind][name].append(value)
                self.say('%d hosts, %s: median %.0f us, p90 %.0f us'
                         % (count, kind, r['median_us'], r['p90_us']))
            for name, value in self.references(hosts).items():
                references[name].append(value)
        return {
            'hosts': self.host_counts,
            'median_us': kinds[SUBSTRATE]['median_us'],
            'p90_us': kinds[SUBSTRATE]['p90_us'],
            'requests': self.requests,
            'warmup_requests': WARMUP,
            'measured': MEASURED,
            'kinds': kinds,
            'reference': references,
            'hosts_holding': holding,
            'stats_per_host': STATS_PER_HOST,
            'target_us': TARGET_US,
            'python': '%d.%d.%d' % sys.version_info[:3],
        }


def run(host_counts=DEFAULT_HOSTS, requests=DEFAULT_REQUESTS,
        progress=None):
    objects.register_all()
    return SchedulerBench(host_counts, requests, progress).run()


def summary(result):
    lines = ['SubstrateFilter + SubstrateWeigher, per request (%d requests, '
             'medians and p90s in microseconds):' % result['requests']]
    width = max(len(k) for k in KINDS)
    for i, count in enumerate(result['hosts']):
        for kind in KINDS:
            r = result['kinds'][kind]
            lines.append(
                '  %6d hosts  %s  median %8.1f  p90 %8.1f  (filter %.1f, '
                'weigher %.1f; %s hosts kept)'
                % (count, kind.ljust(width), r['median_us'][i],
                   r['p90_us'][i], r['filter_median_us'][i],
                   r['weigh_median_us'][i], r['kept_hosts'][i]))
        ref = result['reference']
        lines.append(
            '  %6d hosts  reference: handlers alone %.1f, Nova\'s '
            'RAMWeigher %.1f' % (count, ref['handlers_floor_median_us'][i],
                                 ref['ram_weigher_median_us'][i]))
    return '\n'.join(lines)
