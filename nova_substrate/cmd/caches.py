"""nova-substrate cache: the host's boot working-set image caches.

    nova-substrate cache list [--json]
    nova-substrate cache evict NAME|IMAGE_ID

``list`` shows each cache ([substrate_cache] cache_path): its image, how
much it holds against its quota, whether it is sealed (full) or stale
(its image changed or was deleted), whether its server runs, the
instances using it, and the size of the image's recorded working set.
``evict`` removes a cache no instance uses; a cache in use is refused
(exit status 1) and left as it is. The working-set record stays, so a
pre-warm replays it.
"""

import datetime
import json

from nova_substrate.engine import imagecache

HELP = "this host's boot working-set image caches"
COLUMNS = ('name', 'MiB', 'quota_MiB', 'sealed', 'stale', 'serving',
           'users', 'record_MiB', 'last_used')


def add_parser(subparsers):
    parser = subparsers.add_parser('cache', help=HELP, description=HELP)
    actions = parser.add_subparsers(dest='cache_action', required=True)
    listing = actions.add_parser('list', help='list the caches')
    listing.add_argument('--json', action='store_true',
                         help='print the caches as a JSON list')
    evict = actions.add_parser(
        'evict', help='remove a cache no instance uses')
    evict.add_argument('cache', metavar='NAME|IMAGE_ID',
                       help='a cache name (IMAGE_ID@IDENTITY) or an image '
                            'id (all its caches)')
    return parser


def describe(manager):
    rows = []
    for cache in manager.caches():
        row = cache.describe()
        record = manager.working_set(cache.name)
        row['record_bytes'] = record.bytes if record else 0
        rows.append(row)
    return rows


def _table_row(row):
    last = datetime.datetime.fromtimestamp(row['last_used'],
                                           datetime.timezone.utc)
    return dict(row,
                MiB=round(row['bytes'] / 2 ** 20, 1),
                quota_MiB=round((row['quota_bytes'] or 0) / 2 ** 20),
                record_MiB=round(row['record_bytes'] / 2 ** 20, 1),
                users=len(row['users']),
                last_used=last.strftime('%Y-%m-%dT%H:%M:%SZ'))


def run(args, conf, print_table):
    manager = imagecache.CacheManager.from_options(conf.substrate_cache)
    if args.cache_action == 'list':
        rows = describe(manager)
        if args.json:
            print(json.dumps(rows, indent=1))
        elif not rows:
            print('This host holds no image caches.')
        else:
            print_table([_table_row(r) for r in rows], COLUMNS)
        return 0
    names = [c.name for c in manager.caches()
             if args.cache in (c.name, c.image_id)]
    if not names:
        print('No image cache %s on this host.' % args.cache)
        return 1
    status = 0
    for name in names:
        try:
            manager.evict(name)
            print('Evicted %s.' % name)
        except imagecache.CacheInUse as e:
            print('Refused: %s' % e)
            status = 1
    return status
