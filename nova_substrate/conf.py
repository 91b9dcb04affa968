"""Every nova-substrate option, declared once.

Options live in the ``[substrate]`` group (the engine and the driver),
the ``[substrate_cache]`` group (boot working-set image caches) and the
``[substrate_bench]`` group (the benchmark command). ``list_opts()``
feeds oslo-config-generator (see etc/nova-substrate/).
"""

import grp
import os

from oslo_config import cfg

substrate_group = cfg.OptGroup(
    'substrate',
    title='Substrate options',
    help='Docked, generalized guests that instances are activated from '
         'instead of booted.')

cache_group = cfg.OptGroup(
    'substrate_cache',
    title='Boot working-set image cache options',
    help='Small per-image caches of the blocks a boot reads, between a '
         'remote base image (read lazily over NBD or HTTP) and each '
         'instance\'s copy-on-write overlay.')

bench_group = cfg.OptGroup(
    'substrate_bench',
    title='Substrate benchmark options',
    help='Options of the "nova-substrate bench" commands.')

substrate_opts = [
    cfg.StrOpt('connection_uri',
               default='qemu:///system',
               help='libvirt connection URI used by the substrate engine '
                    'when it runs outside nova-compute (the command line). '
                    'Inside nova-compute the driver\'s own connection is '
                    'used.'),
    cfg.StrOpt('pool_path',
               default='/dev/shm/nova-substrate',
               help='Directory holding docked substrate memory states. It '
                    'must be on tmpfs: restoring from memory is what makes '
                    'activation fast. Created mode 0700, owned by root.'),
    cfg.StrOpt('layer_path',
               default='/var/lib/nova-substrate/layers',
               help='Directory on persistent storage holding the frozen '
                    'disk layers of substrates. Activated instances keep '
                    'their disk overlays on these layers, so they must '
                    'survive a host reboot.'),
    cfg.IntOpt('memory_budget_mb',
               default=2048,
               min=0,
               help='Host memory (MiB) the pool may use for docked memory '
                    'states. When a new substrate does not fit, the least '
                    'recently used substrates of other keys are evicted.'),
    cfg.IntOpt('substrates_per_key',
               default=2,
               min=1,
               max=64,
               help='Ready substrates kept per substrate key. Each is a '
                    'private copy of the key\'s template memory state and '
                    'is consumed by one activation.'),
    cfg.IntOpt('build_memory_mb',
               default=0,
               min=0,
               help='Memory (MiB) a guest boots with while its substrate '
                    'is built, at most the flavor\'s RAM. '
                    '\n\n'
                    'Possible values:\n\n'
                    '* 0 (default): the flavor\'s RAM. A first boot that '
                    'runs cloud-init, generates keys or starts services '
                    'needs it: in too little memory it thrashes the page '
                    'cache until the build times out.\n'
                    '* A smaller size, for images whose first boot is '
                    'known to fit.\n\n'
                    'Either way, once the first boot is over the balloon '
                    'squeezes out the memory the guest no longer uses, so '
                    'the docked memory state holds only what the guest '
                    'keeps in use.\n\n'
                    'Related options:\n\n'
                    '* build_timeout'),
    cfg.IntOpt('spare_pcie_ports',
               default=8,
               min=1,
               max=28,
               help='Free pcie-root-port controllers added to a q35 '
                    'substrate so NICs can be hot-plugged into its clones.'),
    cfg.FloatOpt('build_timeout',
                 default=300.0,
                 min=1.0,
                 help='Seconds a substrate build waits for its guest to '
                      'boot and its guest agent to answer.'),
    cfg.FloatOpt('activate_timeout',
                 default=30.0,
                 min=0.5,
                 help='Seconds an activation waits for the guest to confirm '
                      'its new identity before it is abandoned and cleaned '
                      'up.'),
    cfg.BoolOpt('verify_memory',
                default=True,
                help='Verify the checksum of a substrate\'s whole memory '
                     'state on every activation. The check runs while the '
                     'clone is restored paused, and the clone is resumed '
                     'only if it matches. Headers are always verified '
                     'before libvirt sees the file.'),
    cfg.StrOpt('ssh_host_keys',
               default='background',
               choices=[('background', 'the guest confirms its identity '
                                       'first and makes its SSH host keys '
                                       'right after'),
                        ('sync', 'the ed25519 host key exists when the '
                                 'activation returns')],
               help='When a clone makes its new SSH host keys. Under '
                    'emulation (TCG) the first ssh-keygen in a restored '
                    'guest takes about a second; sshd only starts serving '
                    'once the keys exist either way.'),
    cfg.StrOpt('hook_path',
               default='/usr/sbin/nova-substrate-hook',
               help='Path of the in-guest activation hook (guest/) inside '
                    'substrate guests. A build installs the hook there, '
                    'and its helper in /usr/sbin, through the guest agent '
                    'when the image has none or one of another version.'),
    cfg.StrOpt('guest_tools_path',
               default='/var/lib/nova-substrate/guest-tools',
               help='Directory where nova-compute keeps the static build '
                    'of the hook\'s helper (guestutil.c, compiled on first '
                    'use with gcc and libc6-dev) that builds install in '
                    'guests. Created 0700; refused if a link, or owned or '
                    'writable by another user.\n\n'
                    'Related options:\n\n'
                    '* hook_path'),
    cfg.MultiStrOpt('pools',
                    default=[],
                    sample_default=['cirros-image-id:m1.substrate:2'],
                    help='Substrate pools this host keeps whatever the '
                         'demand, one per line as IMAGE_ID:FLAVOR:COUNT '
                         '(FLAVOR is a flavor ID or name; COUNT ready '
                         'substrates, 1-64). The flavor needs the extra '
                         'spec substrate:enabled=true. A pool is built '
                         'once this host can read the image: at start for '
                         'images it can fetch itself, else after the image '
                         'is pre-cached here (POST /os-aggregates/{id}/'
                         'images) or first booted here.'),
    cfg.BoolOpt('demand_pools',
                default=True,
                help='Also keep pools for the substrate keys requested on '
                     'this host: the first request for a key builds its '
                     'substrate, later ones are activated from it.'),
    cfg.IntOpt('demand_window',
               default=3600,
               min=60,
               help='Seconds a request counts towards its key\'s demand '
                    'pool. A demand pool holds one ready substrate per '
                    'request in the window, at least substrates_per_key '
                    'and at most max_substrates_per_key; a key not '
                    'requested for a whole window is no longer refilled.'),
    cfg.IntOpt('max_substrates_per_key',
               default=4,
               min=1,
               max=64,
               help='Upper bound of a demand pool\'s ready substrates.'),
    cfg.IntOpt('upkeep_interval',
               default=60,
               min=1,
               help='Seconds between two rounds of pool upkeep (build '
                    'missing templates, refill, purge substrates of '
                    'deleted or changed images). Activations also start a '
                    'round at once, to refill.'),
    cfg.FloatOpt('weight_multiplier',
                 default=10.0,
                 help='Multiplier of SubstrateWeigher (scheduler), which '
                      'prefers hosts holding a substrate for the request, '
                      'then hosts with a warm image cache. The default '
                      'outweighs Nova\'s default weighers together. A host '
                      'aggregate overrides it with the metadata key '
                      'substrate_weight_multiplier. Negative values avoid '
                      'such hosts.'),
    cfg.StrOpt('activation_log',
               default='/var/lib/nova-substrate/activations.jsonl',
               help='File where the driver records, per instance spawned '
                    'with a substrate flavor, whether it was activated or '
                    'booted and how long it took ("nova-substrate '
                    'activations" lists it). Mode 0600.'),
]

cache_opts = [
    cfg.BoolOpt('enabled',
                default=False,
                help='Boot instances of raw and qcow2 images on the chain '
                     'remote base <- image cache <- instance overlay '
                     'instead of downloading the whole image into Nova\'s '
                     '_base directory. Images the cache cannot serve boot '
                     'the normal way.'),
    cfg.StrOpt('remote_url',
               default='',
               help='Where QEMU reads an image\'s bytes lazily: a URL '
                    'with "{image_id}" in it, nbd://HOST[:PORT]/EXPORT, '
                    'nbd+unix:///EXPORT?socket=PATH, or http(s):// (the '
                    'server must answer byte ranges). Empty: no remote '
                    'protocol, every image boots from _base.'),
    cfg.StrOpt('cache_path',
               default='/var/lib/nova-substrate/image-caches',
               help='Directory holding the per-image caches and the '
                    'servers that share them with instances. Mode 0710, '
                    'group [substrate_cache] qemu_group.'),
    cfg.StrOpt('record_path',
               default='/var/lib/nova-substrate/working-sets',
               help='Directory of recorded boot working sets, one per '
                    'image, in read order. A pre-warm replays them. It may '
                    'be shared between hosts, so that one host\'s first '
                    'boot warms the others\' caches.'),
    cfg.IntOpt('quota_mb',
               default=256,
               min=1,
               help='Most MiB one image\'s cache may hold. Copy-on-read '
                    'stops when the cache reaches it; reads past it go to '
                    'the remote base.'),
    cfg.IntOpt('budget_mb',
               default=4096,
               min=0,
               help='MiB all caches of the host may hold together. The '
                    'least recently used caches no instance uses are '
                    'evicted to stay within it. 0: no budget.'),
    cfg.IntOpt('max_unused_age',
               default=86400,
               min=0,
               help='Seconds a cache no instance uses is kept before it '
                    'is evicted. 0: kept until the budget needs room.'),
    cfg.StrOpt('qemu_group',
               default='libvirt-qemu',
               help='Group QEMU runs as (libvirt\'s qemu.conf "group"). '
                    'It is given access to the caches\' sockets, and no one '
                    'else is.'),
    cfg.FloatOpt('warmup_timeout',
                 default=300.0,
                 min=1.0,
                 help='Longest warm-up boot of a pre-warm (seconds).'),
    cfg.FloatOpt('warmup_idle',
                 default=10.0,
                 min=0.5,
                 help='A warm-up boot ends when its cache has not grown '
                      'for this many seconds: the boot has read its '
                      'working set.'),
]

bench_opts = [
    cfg.StrOpt('guest_cache_dir',
               default=os.environ.get('NOVA_SUBSTRATE_GUEST_CACHE',
                                      '/var/cache/nova-substrate/guests'),
               sample_default='/var/cache/nova-substrate/guests',
               help='Where the project\'s test guests are built and '
                    'cached.'),
    cfg.StrOpt('work_path',
               default='/var/lib/nova-substrate/bench',
               help='Directory for benchmark domains\' disks and logs.'),
]


class InvalidOption(ValueError):
    """An option has a value the service cannot start with."""

    def __init__(self, group, name, reason):
        self.option = '[%s] %s' % (group, name)
        super().__init__('Invalid option %s: %s' % (self.option, reason))


def register_opts(conf):
    conf.register_group(substrate_group)
    conf.register_opts(substrate_opts, group=substrate_group)
    conf.register_group(cache_group)
    conf.register_opts(cache_opts, group=cache_group)
    conf.register_group(bench_group)
    conf.register_opts(bench_opts, group=bench_group)


def validate(conf):
    """Refuse values that pass type checks but cannot work.

    Raises InvalidOption naming the option, so a service stops at start
    instead of failing at its first activation.
    """
    sub = conf.substrate
    for name in ('pool_path', 'layer_path', 'hook_path', 'guest_tools_path'):
        if not os.path.isabs(getattr(sub, name)):
            raise InvalidOption('substrate', name, 'must be an absolute path')
    if os.path.realpath(sub.pool_path) == os.path.realpath(sub.layer_path):
        raise InvalidOption('substrate', 'layer_path',
                            'must differ from [substrate] pool_path')
    if not os.path.isabs(sub.activation_log):
        raise InvalidOption('substrate', 'activation_log',
                            'must be an absolute path')
    for entry in sub.pools:
        reason = pool_entry_problem(entry)
        if reason:
            raise InvalidOption('substrate', 'pools',
                                '%r: %s' % (entry, reason))
    if sub.max_substrates_per_key < sub.substrates_per_key:
        raise InvalidOption('substrate', 'max_substrates_per_key',
                            'is smaller than [substrate] substrates_per_key '
                            '(%d)' % sub.substrates_per_key)
    if sub.memory_budget_mb and sub.build_memory_mb and \
            sub.memory_budget_mb < sub.build_memory_mb:
        raise InvalidOption('substrate', 'memory_budget_mb',
                            'is smaller than [substrate] build_memory_mb '
                            '(%d MiB): no substrate would fit'
                            % sub.build_memory_mb)
    _validate_cache(conf.substrate_cache)


def _validate_cache(cache):
    for name in ('cache_path', 'record_path'):
        if not os.path.isabs(getattr(cache, name)):
            raise InvalidOption('substrate_cache', name,
                                'must be an absolute path')
    if cache.remote_url:
        reason = remote_url_problem(cache.remote_url)
        if reason:
            raise InvalidOption('substrate_cache', 'remote_url', reason)
    if cache.budget_mb and cache.budget_mb < cache.quota_mb:
        raise InvalidOption('substrate_cache', 'budget_mb',
                            'is smaller than [substrate_cache] quota_mb '
                            '(%d MiB): no cache would fit' % cache.quota_mb)
    if cache.enabled:
        try:
            grp.getgrnam(cache.qemu_group)
        except KeyError:
            raise InvalidOption('substrate_cache', 'qemu_group',
                                'no group %r on this host' % cache.qemu_group)


REMOTE_SCHEMES = ('nbd', 'nbd+unix', 'http', 'https')


def remote_url_problem(template):
    if '{image_id}' not in template:
        return 'must contain "{image_id}"'
    scheme = template.split('://', 1)[0] if '://' in template else ''
    if scheme not in REMOTE_SCHEMES:
        return ('scheme must be one of %s, not %r'
                % (', '.join(REMOTE_SCHEMES), scheme))
    try:
        template.format(image_id='x')
    except (KeyError, IndexError, ValueError) as e:
        return 'bad template: %s' % e
    return None


def parse_pool_entry(entry):
    """(image_id, flavor, count) of a [substrate] pools line."""
    parts = [p.strip() for p in entry.split(':')]
    if len(parts) != 3 or not all(parts):
        raise ValueError('expected IMAGE_ID:FLAVOR:COUNT')
    image_id, flavor, count = parts
    try:
        count = int(count)
    except ValueError:
        raise ValueError('COUNT %r is not a number' % count)
    if not 1 <= count <= 64:
        raise ValueError('COUNT must be between 1 and 64')
    return image_id, flavor, count


def pool_entry_problem(entry):
    try:
        parse_pool_entry(entry)
    except ValueError as e:
        return str(e)
    return None


def list_opts():
    return [(substrate_group, substrate_opts), (cache_group, cache_opts),
            (bench_group, bench_opts)]


CONF = cfg.CONF
register_opts(CONF)
