"""The nova-substrate command line.

    nova-substrate [--config-file FILE] pool list [--json]
    nova-substrate pool build --guest tiny|debian|cloud [--memory-mb M]
                              [--vcpus N]
    nova-substrate pool build --domain-xml FILE --key KEY ...
    nova-substrate pool fill KEY [--count N]
    nova-substrate pool evict (--key KEY | --bytes N | --all)
    nova-substrate pool recover
    nova-substrate bench activation [--json] [--guest tiny|debian|cloud]
                                    [--runs N] [--clones K]
                                    [--memory-mb M] [--vcpus N]
    nova-substrate bench nova [--json] [--runs N] [--guest tiny|cloud]
    nova-substrate bench scheduler [--json] [--hosts N,N...] [--requests N]
    nova-substrate bench cache [--json] [--plot FILE.png] [--counts N,N...]
                               [--bandwidth-mbps M] [--memory-mb M]
                               [--no-boot]
    nova-substrate activations [--json] [--limit N] [--instance UUID]
    nova-substrate cache list [--json]
    nova-substrate cache evict NAME|IMAGE_ID

On a compute host, pass Nova's configuration (--config-file
/etc/nova/nova.conf) so the command sees the driver's [substrate] and
[substrate_cache] options.
"""

import argparse
import json
import logging as std_logging
import os
import sys
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.bench import activation as activation_bench
from nova_substrate.bench import cache as cache_bench
from nova_substrate.cmd import activations
from nova_substrate.cmd import caches
from nova_substrate import conf as substrate_conf
from nova_substrate.engine import build
from nova_substrate.engine import connection
from nova_substrate.engine import exception
from nova_substrate.engine import keys
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import settings as engine_settings
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain

CONF = substrate_conf.CONF
LOG = logging.getLogger(__name__)
logging.register_options(CONF)


def _progress(enabled):
    if not enabled:
        return None

    def say(msg):
        sys.stderr.write('... %s\n' % msg)
        sys.stderr.flush()
    return say


def open_pool():
    sub = CONF.substrate
    return pool_mod.SubstratePool(sub.pool_path, sub.layer_path,
                                  sub.memory_budget_mb * 2 ** 20)


def open_libvirt():
    return connection.open_connection(CONF.substrate.connection_uri)


def _print_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ''))) for r in rows))
              for c in columns]
    line = '  '.join(c.ljust(w) for c, w in zip(columns, widths))
    print(line)
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print('  '.join(str(r.get(c, '')).ljust(w)
                        for c, w in zip(columns, widths)))


def cmd_pool_list(args):
    rows = open_pool().describe()
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print('The pool holds no substrates.')
    else:
        for r in rows:
            r['MiB'] = round(r['bytes'] / 2 ** 20, 1)
            r['labels'] = ','.join('%s=%s' % kv
                                   for kv in sorted(r['labels'].items()))
        _print_table(rows, ['key', 'ready', 'MiB', 'memory_mb', 'vcpus',
                            'layer_users', 'idle_s', 'labels'])
    return 0


def cmd_pool_build(args):
    settings = engine_settings.EngineSettings.from_conf(CONF)
    pool = open_pool()
    conn = open_libvirt()
    say = _progress(sys.stderr.isatty())
    if args.domain_xml:
        if not args.key:
            raise exception.SubstrateError('--domain-xml needs --key')
        with open(args.domain_xml) as f:
            xml = f.read()
        key = args.key
        labels = {'domain_xml': args.domain_xml}
    else:
        guest = guests.get_guest(
            args.guest, cache_dir=CONF.substrate_bench.guest_cache_dir,
            progress=say)
        key = args.key or keys.substrate_key(guest.name, guest.digest,
                                             args.memory_mb, args.vcpus)
        console = os.path.join(CONF.substrate_bench.work_path,
                               'build-%s.log' % key)
        os.makedirs(CONF.substrate_bench.work_path, 0o755, exist_ok=True)
        xml = guest_domain.instance_xml(guest, 'build', str(uuid.uuid4()),
                                        args.memory_mb, args.vcpus,
                                        guest.disk, console)
        labels = {'guest': guest.name}
    template = build.build_substrate(
        conn, pool, build.BuildSpec(key=key, domain_xml=xml,
                                    memory_mb=args.memory_mb,
                                    vcpus=args.vcpus, labels=labels),
        settings, progress=say)
    pool.fill(template.key, args.count or settings.substrates_per_key)
    print(template.key)
    return 0


def cmd_pool_fill(args):
    count = args.count or CONF.substrate.substrates_per_key
    added = open_pool().fill(args.key, count)
    print('%d substrates added to %s' % (added, args.key))
    return 0


def cmd_pool_evict(args):
    pool = open_pool()
    if args.key:
        if not pool.remove(args.key):
            print('No substrate %s in the pool.' % args.key)
            return 1
        print('Removed %s.' % args.key)
    elif args.all:
        for t in pool.templates():
            pool.remove(t.key)
        print('Removed every substrate.')
    else:
        print('Freed %d bytes.' % pool.evict(args.bytes))
    conn = open_libvirt()
    pool.collect_layers(lambda u: _domain_exists(conn, u))
    return 0


def _domain_exists(conn, domain_uuid):
    try:
        conn.lookupByUUIDString(domain_uuid)
        return True
    except libvirt.libvirtError:
        return False


def cmd_pool_recover(args):
    report = open_pool().recover()
    print(json.dumps(report, indent=1))
    return 0


def cmd_bench_activation(args):
    for option, value in (('--runs', args.runs), ('--clones', args.clones),
                          ('--memory-mb', args.memory_mb),
                          ('--vcpus', args.vcpus)):
        if value is not None and value < 1:
            raise exception.SubstrateError('%s must be at least 1' % option)
    settings = engine_settings.EngineSettings.from_conf(CONF)
    say = _progress(sys.stderr.isatty())
    with activation_bench.activation_bench(
            open_libvirt(), settings, args.guest,
            CONF.substrate_bench.work_path, memory_mb=args.memory_mb,
            vcpus=args.vcpus, runs=args.runs, clones=args.clones,
            progress=say,
            guest_cache_dir=CONF.substrate_bench.guest_cache_dir) as bench:
        result = bench.run()
    return _print_result(args, result, _print_activation)


def cmd_bench_nova(args):
    if args.runs < 1:
        raise exception.SubstrateError('--runs must be at least 1')
    # Imported here: it loads Nova's test harness and makes Nova's
    # threading choice for the process, which no other command needs. The
    # harness registers command line options when imported and parses the
    # configuration itself, as a test runner's process would have it, so
    # what main() parsed is let go first; the cloud brings its own options.
    CONF.clear()
    root = std_logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        from nova_substrate.bench import nova as nova_bench
    except ImportError as e:
        raise exception.SubstrateError(
            "bench nova needs Nova's test harness and the project's test "
            "requirements (test-requirements.txt): %s" % e)
    finally:
        # Nova's harness sets up logging to stdout when imported (nova.test),
        # where this command prints its result: the command's own logging
        # goes back in place.
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    result = nova_bench.run(runs=args.runs, guest=args.guest,
                            progress=_progress(sys.stderr.isatty()))
    return _print_result(args, result,
                         lambda r: print(nova_bench.summary(r)))


def _print_result(args, result, show):
    """A benchmark's result as JSON with --json, else show(result)."""
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        show(result)
    return 0


def _counts(what, example):
    """An argparse type: positive numbers of what, comma-separated."""
    def parse(text):
        try:
            counts = [int(n) for n in text.split(',')]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1:
            raise argparse.ArgumentTypeError(
                'expected numbers of %s separated by commas, e.g. %s'
                % (what, example))
        return counts
    return parse


_host_counts = _counts('hosts', '100,1000')
_startup_counts = _counts('simultaneous startups', '1,2,4,8,16')


def cmd_bench_scheduler(args):
    if args.requests < 1:
        raise exception.SubstrateError('--requests must be at least 1')
    if 'eventlet' not in sys.modules:
        # Native threads, as Nova 34's scheduler runs: the choice is made
        # before Nova is loaded (nova_substrate.testing), so eventlet is
        # never imported. A process that loaded it already stays as it is.
        import nova_substrate.testing  # noqa: F401
    # Imported here: it loads Nova's scheduler, which no other command
    # needs.
    from nova_substrate.bench import scheduler as scheduler_bench
    result = scheduler_bench.run(args.hosts, args.requests,
                                 progress=_progress(sys.stderr.isatty()))
    return _print_result(args, result,
                         lambda r: print(scheduler_bench.summary(r)))


def cmd_bench_cache(args):
    if args.bandwidth_mbps <= 0:
        raise exception.SubstrateError('--bandwidth-mbps must be positive')
    if args.memory_mb < 1:
        raise exception.SubstrateError('--memory-mb must be at least 1')
    settings = engine_settings.EngineSettings.from_conf(CONF)
    with cache_bench.cache_bench(
            open_libvirt(), settings, CONF.substrate_bench.work_path,
            guest_cache_dir=CONF.substrate_bench.guest_cache_dir,
            counts=args.counts, bandwidth_mbps=args.bandwidth_mbps,
            memory_mb=args.memory_mb, boot=not args.no_boot,
            progress=_progress(sys.stderr.isatty())) as bench:
        result = bench.run()
    if args.plot:
        cache_bench.write_plot(result, args.plot)
    return _print_result(args, result,
                         lambda r: print(cache_bench.summary(r)))


def _print_activation(r):
    rows = [
        ('guest', r['guest'], ''),
        ('flavor', '%d MiB, %d vCPUs' % (r['flavor_ram_mb'], r['vcpus']), ''),
        ('boot to guest-ready', '%.3f s' % r['boot_s'],
         'median of %d' % r['runs']),
        ('activation to running', '%.3f s' % r['running_s'],
         '%.2fx the libvirt floor' % r['running_over_floor']),
        ('activation to guest-ready', '%.3f s' % r['activate_s'],
         'median of %d' % r['runs']),
        ('libvirt floor (start paused)', '%.3f s' % r['libvirt_floor_s'], ''),
        ('boot / activation', '%.1fx' % r['ratio'], ''),
        ('%d clones at once' % r['clones'], '%.3f s' % r['concurrent_s'],
         '%.2fx one activation' % r['concurrent_over_single']),
        ('docked substrate', '%.1f MiB' % (r['substrate_bytes'] / 2 ** 20),
         '%.1f%% of flavor RAM' % (100 * r['substrate_fraction_of_ram'])),
        ('substrate build', '%.1f s' % r['build_s'], 'once per key'),
    ]
    if 'boot_ssh_s' in r:
        # A guest with cloud-init: the tenant's view of the same runs.
        rows[7:7] = [
            ('boot to SSH login', '%.3f s' % r['boot_ssh_s'],
             'median of %d' % r['runs']),
            ('activation to SSH login', '%.3f s' % r['activate_ssh_s'],
             'median of %d' % r['runs']),
            ('boot / activation to SSH', '%.1fx' % r['ssh_ratio'], ''),
            ('boot to user data done', '%.3f s' % r['boot_userdata_s'],
             'median of %d' % r['runs']),
            ('activation to user data done',
             '%.3f s' % r['activate_userdata_s'],
             'median of %d' % r['runs']),
            ('boot / activation to user data', '%.1fx' % r['userdata_ratio'],
             ''),
        ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    for a, b, c in rows:
        print('%s  %s  %s' % (a.ljust(w0), b.rjust(w1), c))


def build_parser():
    parser = argparse.ArgumentParser(
        prog='nova-substrate',
        description='Substrates: docked guests that instances are '
                    'activated from instead of booted.')
    parser.add_argument('--config-file', action='append', default=[],
                        help='oslo.config file (repeatable)')
    parser.add_argument('--debug', action='store_true')
    top = parser.add_subparsers(dest='group', required=True)

    pool = top.add_parser('pool', help='the substrate pool of this host')
    pool_cmds = pool.add_subparsers(dest='command', required=True)
    p = pool_cmds.add_parser('list', help='list docked substrates')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_pool_list)
    p = pool_cmds.add_parser('build', help='build and dock a substrate')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--guest', choices=guests.GUEST_NAMES,
                     help='one of the project\'s test guests')
    src.add_argument('--domain-xml', help='file with the instance domain XML')
    p.add_argument('--key', help='substrate key (hex); derived for --guest')
    p.add_argument('--memory-mb', type=int, default=512)
    p.add_argument('--vcpus', type=int, default=2)
    p.add_argument('--count', type=int, help='ready substrates to make')
    p.set_defaults(func=cmd_pool_build)
    p = pool_cmds.add_parser('fill', help='copy a template into more '
                                          'ready substrates')
    p.add_argument('key')
    p.add_argument('--count', type=int)
    p.set_defaults(func=cmd_pool_fill)
    p = pool_cmds.add_parser('evict', help='remove substrates')
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument('--key')
    what.add_argument('--bytes', type=int)
    what.add_argument('--all', action='store_true')
    p.set_defaults(func=cmd_pool_evict)
    p = pool_cmds.add_parser('recover', help='check the pool: adopt what is '
                                             'valid, delete the rest')
    p.set_defaults(func=cmd_pool_recover)

    p = activations.add_parser(top)
    p.set_defaults(func=lambda args: activations.run(args, CONF))

    p = caches.add_parser(top)
    p.set_defaults(func=lambda args: caches.run(args, CONF, _print_table))

    bench = top.add_parser('bench', help='benchmarks (print JSON)')
    bench_cmds = bench.add_subparsers(dest='command', required=True)
    p = bench_cmds.add_parser('activation',
                              help='boot versus activation of one guest')
    p.add_argument('--json', action='store_true')
    p.add_argument('--guest', choices=guests.GUEST_NAMES, default='tiny',
                   help='the test guest; with cloud (cloud-init), boots '
                        'and activations are also timed to an SSH login '
                        'with the tenant\'s key and to the end of their '
                        'user data')
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--clones', type=int, default=8)
    p.add_argument('--memory-mb', type=int,
                   help='memory of each guest (default: %d; cloud: %d)'
                   % (activation_bench.DEFAULT_SIZE[0],
                      activation_bench.guest_size('cloud')[0]))
    p.add_argument('--vcpus', type=int,
                   help='vCPUs of each guest (default: %d; cloud: %d)'
                   % (activation_bench.DEFAULT_SIZE[1],
                      activation_bench.guest_size('cloud')[1]))
    p.set_defaults(func=cmd_bench_activation)
    p = bench_cmds.add_parser('nova',
                              help='POST /servers to ACTIVE and to '
                                   'guest-ready in Nova, substrate flavor '
                                   'versus normal flavor')
    p.add_argument('--json', action='store_true')
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--guest', choices=('tiny', 'cloud'), default='tiny',
                   help='tiny: to guest-ready; cloud: a tenant\'s server of '
                        'a cloud image, to SSH login and user-data run')
    p.set_defaults(func=cmd_bench_nova)
    p = bench_cmds.add_parser('scheduler',
                              help='what SubstrateFilter and '
                                   'SubstrateWeigher cost per request, '
                                   'through Nova\'s scheduler handlers')
    p.add_argument('--json', action='store_true')
    p.add_argument('--hosts', type=_host_counts, default=[100, 1000],
                   help='numbers of hosts, comma-separated '
                        '(default: 100,1000)')
    p.add_argument('--requests', type=int, default=200,
                   help='timed requests per number of hosts and kind of '
                        'request (default: 200)')
    p.set_defaults(func=cmd_bench_scheduler)
    p = bench_cmds.add_parser('cache',
                              help='simultaneous startups of the Debian '
                                   'guest from a remote image, with and '
                                   'without a boot working-set cache')
    p.add_argument('--json', action='store_true')
    p.add_argument('--plot', metavar='FILE.png',
                   help='also draw startup time against N into a PNG')
    p.add_argument('--counts', type=_startup_counts,
                   default=list(cache_bench.DEFAULT_COUNTS),
                   help='numbers of simultaneous startups, comma-separated '
                        '(default: %s)' % ','.join(
                            map(str, cache_bench.DEFAULT_COUNTS)))
    p.add_argument('--bandwidth-mbps', type=float,
                   default=cache_bench.DEFAULT_BANDWIDTH_MBPS,
                   help='bandwidth of the remote image store in Mbit/s '
                        '(default: %d)' % cache_bench.DEFAULT_BANDWIDTH_MBPS)
    p.add_argument('--memory-mb', type=int,
                   default=cache_bench.DEFAULT_MEMORY_MB,
                   help='memory of each guest (default: %d)'
                        % cache_bench.DEFAULT_MEMORY_MB)
    p.add_argument('--no-boot', action='store_true',
                   help='replay the recorded reads only; boot no guests '
                        'but the recording one')
    p.set_defaults(func=cmd_bench_cache)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli = []
    for f in args.config_file:
        cli += ['--config-file', f]
    CONF(cli, project='nova-substrate', default_config_files=[])
    CONF.set_override('debug', args.debug)
    # Output (tables, JSON) goes to stdout; logging stays on stderr and,
    # without --debug, says only what went wrong.
    CONF.set_override('use_stderr', True)
    logging.setup(CONF, 'nova-substrate')
    if not args.debug:
        std_logging.getLogger().setLevel(std_logging.WARNING)
    try:
        substrate_conf.validate(CONF)
        return args.func(args)
    except substrate_conf.InvalidOption as e:
        sys.stderr.write('nova-substrate: %s\n' % e)
        return 2
    except exception.SubstrateError as e:
        sys.stderr.write('nova-substrate: %s\n' % e)
        return 1


if __name__ == '__main__':
    sys.exit(main())
