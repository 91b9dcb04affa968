"""bench cache: simultaneous startups with and without a working-set cache.

After Razavi and Kielmann (SC'13): a small copy-on-read cache of the
blocks a boot reads, between the remote base image and the instances'
overlays, makes N simultaneous boots take about as long as one.

The Debian test guest's qcow2 disk is served over NBD through a bandwidth
limit (bench.remote), standing for the image store and its network. One
recording boot on a fresh cache fills the cache and gives the boot's
working set; sampling the cache's growth during that boot dates each of
its reads (the timed record). Then, for each number N of simultaneous
startups, two chains are compared:

- no cache: every instance's overlay backs onto the remote itself, so
  every instance reads its working set through the limit;
- cache: every overlay backs onto the warm cache's link; the cache holds
  the working set and reads from the remote only what it lacks.

And two kinds of startup:

- boot: N guests (1 vCPU each) start at once; the time is until all are
  guest-ready;
- replay: N qemu-io processes read the timed record, each read issued at
  the time the recording boot made it: the boot's I/O demand over time
  without its CPU demand, which on a TCG host with few cores would
  decide the boot times at large N.

Bytes served by the remote are counted at the remote, per startup.
"""

import bisect
import collections
import contextlib
import grp
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.bench import remote as remote_mod
from nova_substrate.engine import activate
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import imagecache
from nova_substrate.engine import qemuimg
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain

LOG = logging.getLogger(__name__)

MiB = 2 ** 20
GUEST = 'debian'
DEFAULT_COUNTS = (1, 2, 4, 8, 16)
DEFAULT_BANDWIDTH_MBPS = 50
DEFAULT_MEMORY_MB = 256
VCPUS = 1
CACHE_QUOTA_BYTES = 256 * MiB
QEMU_GROUP = 'libvirt-qemu'
SAMPLE_INTERVAL_S = 0.1
# The remote's throttle lets a request through and charges it afterwards,
# so one large read would pass unthrottled. A guest reads in requests of
# this order; the replay splits the record into reads no larger.
READ_BYTES = 256 * 1024
# A startup that takes longer than this, per instance started at once,
# counts as failed.
STARTUP_TIMEOUT_S = 300.0

NO_CACHE = 'no_cache'
CACHE = 'cache'
CHAINS = (NO_CACHE, CACHE)

#: What the cache should achieve: N replays at once within 25% of one,
#: and a cache much smaller than the image Nova would download.
TARGETS = {'replay_cache_ratio': 1.25, 'cache_fraction': 0.15}

TimedRead = collections.namedtuple('TimedRead', 'offset length at_s')


# -- the timed record --------------------------------------------------

def growth_curve(samples, total):
    """The cache's growth from (t, allocated bytes) samples, as bytes read.

    The allocation also holds qcow2 metadata, so the growth is scaled to
    run from 0 to total, the working set's bytes. It never goes down.
    """
    base = samples[0][1]
    span = max(b for _, b in samples) - base
    if span <= 0:
        # Nothing seen growing: as if everything was read at the start.
        return [total] * len(samples)
    curve, high = [], 0
    for _, allocated in samples:
        high = max(high, (allocated - base) * total / span)
        curve.append(high)
    return curve


def _crossing(times, curve, position):
    """When the curve first passed position, interpolated between samples.

    A read that starts at position began after the sample that had not
    yet reached it.
    """
    i = bisect.bisect_right(curve, position)
    if i == 0:
        return times[0]
    if i == len(curve):
        return times[-1]
    t0, t1, g0, g1 = times[i - 1], times[i], curve[i - 1], curve[i]
    return t0 + (position - g0) / (g1 - g0) * (t1 - t0)


def timed_record(extents, samples, read_bytes=READ_BYTES):
    """The working set as reads of at most read_bytes, each dated.

    extents are in first-read order, as the cache allocated them; samples
    are (seconds since the boot started, cache allocated bytes). Each
    read gets the time the recording boot's cumulative reads reached its
    first byte on the growth curve.
    """
    total = sum(length for _, length in extents)
    if not samples:
        raise ValueError('no samples of the cache growth')
    times = [t for t, _ in samples]
    curve = growth_curve(samples, total)
    reads, position = [], 0
    for offset, length in extents:
        for start in range(0, length, read_bytes):
            size = min(read_bytes, length - start)
            reads.append(TimedRead(offset + start, size,
                                   _crossing(times, curve, position)))
            position += size
    return reads


def qemu_io_script(reads):
    """qemu-io commands issuing each read at its time, then waiting.

    Reads are asynchronous: each is issued at its recorded time whatever
    earlier reads still wait on the remote, so the demand over time is
    the recording boot's and only the supply differs between chains.
    Sleeps are whole milliseconds, counted from the script's start so
    that rounding errors do not add up.
    """
    lines, clock_ms = [], 0
    for read in reads:
        at_ms = int(round(read.at_s * 1000))
        if at_ms > clock_ms:
            lines.append('sleep %d' % (at_ms - clock_ms))
            clock_ms = at_ms
        lines.append('aio_read -q %d %d' % (read.offset, read.length))
    lines.append('aio_flush')
    return ''.join(line + '\n' for line in lines)


# -- the result --------------------------------------------------------

def _ratio(results, key):
    """T(largest N) / T(smallest N) for one series, None if not measured."""
    ordered = sorted(results, key=lambda r: r['n'])
    first, last = ordered[0].get(key), ordered[-1].get(key)
    if not first or last is None:
        return None
    return round(last / first, 3)


SERIES = {
    'boot_no_cache': 'no_cache_s',
    'boot_cache': 'cache_s',
    'replay_no_cache': 'replay_no_cache_s',
    'replay_cache': 'replay_cache_s',
}


def summarize(result):
    """Add ratios, the cache's fraction of the image and the targets met."""
    results = result['results']
    result['ratios'] = {name: _ratio(results, key)
                        for name, key in SERIES.items()}
    result['cache_fraction'] = round(
        result['cache_bytes'] / result['image_bytes'], 4)
    replay_ratio = result['ratios']['replay_cache']
    result['targets'] = {
        'replay_cache_ratio': (replay_ratio is not None and
                               replay_ratio <= TARGETS['replay_cache_ratio']),
        'cache_fraction': (result['cache_fraction'] <=
                           TARGETS['cache_fraction']),
    }
    result['target_limits'] = dict(TARGETS)
    return result


def count_result(n, boot_s, boot_bytes, replay_s, replay_bytes):
    """One N's row: times per chain and the remote's bytes per startup.

    boot_s and boot_bytes are None when boots were not measured; the
    bytes per startup then come from the replays.
    """
    boot_s = boot_s or {}
    return {
        'n': n,
        'no_cache_s': boot_s.get(NO_CACHE),
        'cache_s': boot_s.get(CACHE),
        'replay_no_cache_s': replay_s[NO_CACHE],
        'replay_cache_s': replay_s[CACHE],
        'remote_bytes_per_boot': dict(boot_bytes or replay_bytes),
        'replay_remote_bytes_per_boot': dict(replay_bytes),
    }


def summary(result):
    """The result as a table, for people."""
    lines = ['Simultaneous startups of the %s guest (N = %s), remote: %s, '
             '%g Mbit/s' % (result['guest'],
                            ','.join(map(str, result['counts'])),
                            result['server'], result['bandwidth_mbps']),
             'image %.1f MiB, cache %.1f MiB (%.1f%%), working set %.1f MiB,'
             ' recording boot %.1f s'
             % (result['image_bytes'] / MiB, result['cache_bytes'] / MiB,
                100 * result['cache_fraction'],
                result['working_set_bytes'] / MiB,
                result['recording_boot_s']),
             '']
    columns = ('N', 'boot no cache', 'boot cache', 'replay no cache',
               'replay cache', 'remote MiB/boot no cache',
               'remote MiB/boot cache')
    rows = [(str(r['n']), _seconds(r['no_cache_s']), _seconds(r['cache_s']),
             _seconds(r['replay_no_cache_s']), _seconds(r['replay_cache_s']),
             '%.1f' % (r['remote_bytes_per_boot'][NO_CACHE] / MiB),
             '%.1f' % (r['remote_bytes_per_boot'][CACHE] / MiB))
            for r in result['results']]
    widths = [max(len(c), *(len(row[i]) for row in rows))
              for i, c in enumerate(columns)]
    for row in [columns] + rows:
        lines.append('  '.join(cell.rjust(w) for cell, w in zip(row, widths)))
    ratios = result['ratios']
    lines.append('')
    lines.append('T(N max) / T(N min): ' + ', '.join(
        '%s %s' % (name, '-' if ratios[name] is None
                   else '%.2f' % ratios[name]) for name in SERIES))
    lines.append('targets: ' + ', '.join(
        '%s <= %s %s' % (name, TARGETS[name],
                         'met' if met else 'NOT met')
        for name, met in sorted(result['targets'].items())))
    return '\n'.join(lines)


def _seconds(value):
    return '-' if value is None else '%.2f s' % value


def log2_ticks(counts):
    """Powers of two from 1 up to the largest count, and the counts."""
    ticks, power = set(counts), 1
    while power <= max(counts):
        ticks.add(power)
        power *= 2
    return sorted(ticks)


def write_plot(result, path):
    """Startup time against N, in the style of the paper's figure."""
    # Imported here: only --plot needs matplotlib. Agg draws without a
    # display, and a figure of its own leaves pyplot's global state alone.
    from matplotlib.backends import backend_agg
    from matplotlib import figure as mpl_figure
    from matplotlib import ticker

    counts = [r['n'] for r in result['results']]
    # Boots solid, replays dashed; one colour per chain.
    lines = (('boot, no cache', 'no_cache_s', 'o', '-', 'tab:red'),
             ('boot, cache', 'cache_s', 's', '-', 'tab:blue'),
             ('replay, no cache', 'replay_no_cache_s', '^', '--', 'tab:red'),
             ('replay, cache', 'replay_cache_s', 'D', '--', 'tab:blue'))
    figure = mpl_figure.Figure(figsize=(7, 4.5))
    backend_agg.FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    highest = 0.0
    for label, key, marker, style, colour in lines:
        points = [(r['n'], r[key]) for r in result['results']
                  if r.get(key) is not None]
        if points:
            axes.plot(*zip(*points), marker=marker, linestyle=style,
                      color=colour, label=label)
            highest = max(highest, max(t for _, t in points))
    axes.set_xscale('log', base=2)
    axes.xaxis.set_major_locator(ticker.FixedLocator(log2_ticks(counts)))
    axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
    axes.xaxis.set_minor_locator(ticker.NullLocator())
    axes.set_xlim(min(counts) / 1.25, max(counts) * 1.25)
    axes.set_ylim(0, highest * 1.15 or 1)
    axes.set_xlabel('number of simultaneous VM startups')
    axes.set_ylabel('startup time (s)')
    axes.set_title('%s guest, remote image at %g Mbit/s'
                   % (result['guest'].capitalize(),
                      result['bandwidth_mbps']))
    axes.grid(True, which='major', linestyle=':')
    axes.legend(loc='upper left')
    figure.tight_layout()
    figure.savefig(path, format='png', dpi=100)


# -- the measurements --------------------------------------------------

def _in_parallel(calls):
    """Run the calls at once, each in a thread; raise the first error.

    Daemon threads: a Ctrl-C does not wait for guests still booting; the
    caller's cleanup destroys them.
    """
    errors = []

    def run(call):
        try:
            call()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(call,), daemon=True)
               for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A join with a timeout lets KeyboardInterrupt through.
        while thread.is_alive():
            thread.join(0.5)
    if errors:
        raise errors[0]


class _Sampler:
    """A thread sampling the cache's allocated bytes, from time t0 on."""

    def __init__(self, cache, t0, interval=SAMPLE_INTERVAL_S):
        self.cache = cache
        self.t0 = t0
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='cache-growth-sampler')

    def start(self):
        self._sample()
        self._thread.start()
        return self

    def _sample(self):
        self.samples.append((time.monotonic() - self.t0,
                             self.cache.allocated_bytes()))

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.samples


class CacheBench:

    def __init__(self, conn, settings, work_path, guest_cache_dir=None,
                 counts=DEFAULT_COUNTS,
                 bandwidth_mbps=DEFAULT_BANDWIDTH_MBPS,
                 memory_mb=DEFAULT_MEMORY_MB, boot=True, progress=None):
        self.conn = conn
        self.hook_path = settings.hook_path
        self.counts = sorted(set(counts))
        self.bandwidth_mbps = bandwidth_mbps
        self.memory_mb = memory_mb
        self.boot = boot
        self.say = progress or (lambda msg: None)
        self.guest = guests.get_guest(GUEST, cache_dir=guest_cache_dir,
                                      progress=self.say)
        os.makedirs(work_path, mode=0o755, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix='cache-', dir=work_path)
        # QEMU runs as libvirt-qemu and writes console logs here.
        os.chmod(self.work, 0o755)
        self.remote = None
        self.manager = None
        self.watcher = None

    def close(self):
        if self.watcher is not None:
            self.watcher.stop()
        if self.manager is not None:
            self.manager.stop_all()
        if self.remote is not None:
            self.remote.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def _path(self, name):
        return os.path.join(self.work, name)

    def _start(self):
        self.remote = remote_mod.NBDRemote(
            self.guest.disk, self.work,
            bandwidth_mbps=self.bandwidth_mbps).start()
        self.manager = imagecache.CacheManager(
            self._path('caches'), self._path('records'), CACHE_QUOTA_BYTES,
            socket_group=grp.getgrnam(QEMU_GROUP).gr_gid)
        self.watcher = imagecache.QuotaWatcher(self.manager).start()

    def _domain_xml(self, name, overlay):
        return guest_domain.instance_xml(
            self.guest, name, str(uuid.uuid4()), self.memory_mb, VCPUS,
            overlay, self._path(name + '.log'))

    def _backing(self, chain, cache):
        if chain == CACHE:
            return cache.link, 'qcow2'
        return self.remote.url, 'qcow2'

    def _overlays(self, prefix, n, chain, cache):
        """n fresh overlays on the chain's backing, named prefix-<hex>."""
        backing, backing_format = self._backing(chain, cache)
        names = ['%s-%s' % (prefix, uuid.uuid4().hex[:8]) for _ in range(n)]
        overlays = []
        try:
            for name in names:
                overlay = self._path(name + '.qcow2')
                # With the size given, qemu-img does not read the remote:
                # the remote counts only the startups' reads.
                qemuimg.create_overlay(overlay, backing, backing_format,
                                       self.guest.disk_bytes)
                overlays.append(overlay)
        except BaseException:
            _unlink_all(overlays)
            raise
        return list(zip(names, overlays))

    # -- recording boot ------------------------------------------------

    def record(self):
        """Boot once on a fresh cache; the warm cache and the timed record.

        Returns (cache, working set, timed reads, seconds to guest-ready).
        """
        cache = self.manager.open('bench-%s' % self.guest.name,
                                  self.guest.digest, self.remote.url,
                                  'qcow2')
        name = 'bench-cache-record-%s' % uuid.uuid4().hex[:8]
        overlay = self._path(name + '.qcow2')
        qemuimg.create_overlay(overlay, cache.link, 'qcow2',
                               self.guest.disk_bytes)
        xml = self._domain_xml(name, overlay)
        t0 = time.monotonic()
        sampler = _Sampler(cache, t0).start()
        try:
            dom = self.conn.createXML(xml, 0)
            guest_agent.GuestAgent(dom).wait_booted(
                self.hook_path, t0 + STARTUP_TIMEOUT_S)
            ready_s = time.monotonic() - t0
        finally:
            self._destroy([name])
            samples = sampler.stop()
            _unlink_all([overlay])
        working_set = self.manager.record(cache)
        reads = timed_record(working_set.extents, samples)
        LOG.info('Recording boot: guest-ready in %.1f s, working set %d '
                 'bytes in %d extents', ready_s, working_set.bytes,
                 len(working_set.extents))
        return cache, working_set, reads, ready_s

    # -- boot mode -----------------------------------------------------

    def boot_together(self, n, chain, cache):
        """Seconds from starting n guests at once until all are ready."""
        instances = self._overlays('bench-cache-%s' % chain.replace('_', ''),
                                   n, chain, cache)
        xmls = [self._domain_xml(name, overlay)
                for name, overlay in instances]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S * n
        stopping = threading.Event()

        def boot(xml):
            dom = self.conn.createXML(xml, 0)
            if stopping.is_set():
                # Started after the cleanup looked for it.
                activate.destroy_domain(dom)
                return
            guest_agent.GuestAgent(dom).wait_booted(self.hook_path,
                                                    deadline)

        t0 = time.monotonic()
        try:
            _in_parallel([lambda xml=xml: boot(xml) for xml in xmls])
            return time.monotonic() - t0
        finally:
            stopping.set()
            self._destroy([name for name, _ in instances])
            _unlink_all([overlay for _, overlay in instances])

    def _destroy(self, names):
        # By name: a guest whose thread was still in createXML when the
        # run stopped is found too.
        for name in names:
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            activate.destroy_domain(dom)

    # -- replay mode ---------------------------------------------------

    def replay_together(self, n, chain, cache, script):
        """Seconds from starting n replays at once until all finished."""
        instances = self._overlays('bench-replay-%s'
                                   % chain.replace('_', ''), n, chain, cache)
        processes = []
        try:
            t0 = time.monotonic()
            for name, overlay in instances:
                processes.append(_start_replay(overlay, script,
                                               self._path(name + '.out')))
            deadline = t0 + STARTUP_TIMEOUT_S * n
            for process in processes:
                _wait_replay(process, deadline)
            return time.monotonic() - t0
        finally:
            for process in processes:
                _stop_replay(process)
            _unlink_all([overlay for _, overlay in instances])

    # -- the run -------------------------------------------------------

    def _measure(self, what, n, chain, run):
        """run() timed, with the remote's bytes per startup."""
        before = self.remote.bytes_served()
        seconds = run()
        per_startup = (self.remote.bytes_served() - before) // n
        self.say('%s, %d at once, %s: %.2f s, %.1f MiB per startup from '
                 'the remote' % (what, n, chain.replace('_', ' '), seconds,
                                 per_startup / MiB))
        return round(seconds, 3), per_startup

    def run(self):
        self._start()
        image_bytes = os.stat(self.guest.disk).st_size
        self.say('recording boot on a fresh cache (remote at %g Mbit/s)'
                 % self.bandwidth_mbps)
        before = self.remote.bytes_served()
        cache, working_set, reads, ready_s = self.record()
        recording_bytes = self.remote.bytes_served() - before
        cache_bytes = cache.allocated_bytes()
        self.say('recording boot: %.1f s, working set %.1f MiB, cache '
                 '%.1f MiB' % (ready_s, working_set.bytes / MiB,
                               cache_bytes / MiB))
        script_path = self._path('replay.qemu-io')
        with open(script_path, 'w') as f:
            f.write(qemu_io_script(reads))

        results = []
        for n in self.counts:
            boot_s = boot_bytes = None
            if self.boot:
                boot_s, boot_bytes = {}, {}
                for chain in CHAINS:
                    boot_s[chain], boot_bytes[chain] = self._measure(
                        'boot', n, chain,
                        lambda: self.boot_together(n, chain, cache))
            replay_s, replay_bytes = {}, {}
            for chain in CHAINS:
                replay_s[chain], replay_bytes[chain] = self._measure(
                    'replay', n, chain,
                    lambda: self.replay_together(n, chain, cache,
                                                 script_path))
            results.append(count_result(n, boot_s, boot_bytes, replay_s,
                                        replay_bytes))

        return summarize({
            'guest': self.guest.name,
            'server': self.remote.SERVER,
            'limit': self.remote.limit,
            'bandwidth_mbps': self.bandwidth_mbps,
            'memory_mb': self.memory_mb,
            'vcpus': VCPUS,
            'boot': self.boot,
            'image_bytes': image_bytes,
            'image_virtual_bytes': self.guest.disk_bytes,
            'cache_quota_bytes': CACHE_QUOTA_BYTES,
            'cache_bytes': cache_bytes,
            'working_set_bytes': working_set.bytes,
            'working_set_extents': len(working_set.extents),
            'replay_reads': len(reads),
            'replay_span_s': round(reads[-1].at_s, 3) if reads else 0.0,
            'recording_boot_s': round(ready_s, 3),
            'recording_remote_bytes': recording_bytes,
            'counts': self.counts,
            'results': results,
        })


def _start_replay(overlay, script_path, output_path):
    with open(script_path) as script, open(output_path, 'w') as output:
        process = subprocess.Popen(
            ['qemu-io', '-r', '-f', 'qcow2', overlay], stdin=script,
            stdout=output, stderr=subprocess.STDOUT)
    process.output_path = output_path
    return process


def _wait_replay(process, deadline):
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise exception.SubstrateError('a replay did not finish in time')
    with open(process.output_path, errors='replace') as f:
        output = f.read()
    # qemu-io goes on after a failed read and may still exit 0.
    failed = [line for line in output.splitlines()
              if 'failed' in line or 'Could not open' in line]
    if process.returncode or failed:
        raise exception.SubstrateError(
            'replay failed (qemu-io exit %d): %s'
            % (process.returncode, (failed or [output.strip()])[0]))


def _stop_replay(process):
    if process.poll() is None:
        process.kill()
        process.wait()
    _unlink_all([process.output_path])


def _unlink_all(paths):
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def cache_bench(*args, **kwargs):
    bench = CacheBench(*args, **kwargs)
    try:
        yield bench
    finally:
        bench.close()
