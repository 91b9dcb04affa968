"""nova-substrate activations: the host's activation log, for operators.

    nova-substrate activations [--json] [--limit N] [--instance UUID]

Lists the last spawns of instances with substrate flavors on this host
(``[substrate] activation_log``, written by the driver): whether each was
activated from a substrate or booted, how long it took and, for a boot,
why.
"""

import argparse
import datetime
import json

from nova_substrate import notifications

HELP = 'how instances with substrate flavors were spawned on this host'
COLUMNS = ('time', 'instance', 'mode', 'seconds', 'flavor', 'key', 'reason')
#: Enough of a substrate key to tell keys apart in a table.
KEY_CHARS = 12


def _positive_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a number' % value)
    if number < 1:
        raise argparse.ArgumentTypeError('must be at least 1')
    return number


def add_parser(subparsers):
    """Add the activations subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser('activations', help=HELP,
                                   description=HELP)
    parser.add_argument('--json', action='store_true',
                        help='print the records as a JSON list')
    parser.add_argument('--limit', type=_positive_int, default=20,
                        metavar='N',
                        help='the last N spawns (default: 20)')
    parser.add_argument('--instance', metavar='UUID',
                        help='only the spawns of this instance')
    return parser


def _iso_time(timestamp):
    try:
        when = datetime.datetime.fromtimestamp(float(timestamp),
                                               datetime.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return ''
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def _seconds(value):
    try:
        return '%.3f' % float(value)
    except (TypeError, ValueError):
        return ''


def _row(record):
    return {
        'time': _iso_time(record.get('time')),
        'instance': record.get('instance_uuid') or '',
        'mode': record.get('mode') or '',
        'seconds': _seconds(record.get('seconds')),
        'flavor': record.get('flavor') or '',
        'key': (record.get('key') or '')[:KEY_CHARS],
        'reason': record.get('reason') or '',
    }


def _print_table(rows, columns):
    widths = [max(len(c), *(len(str(r.get(c, ''))) for r in rows))
              for c in columns]
    print('  '.join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print('  '.join(str(r.get(c, '')).ljust(w)
                        for c, w in zip(columns, widths)).rstrip())


def run(args, conf):
    """Print the records args ask for; returns the exit status."""
    path = conf.substrate.activation_log
    records = notifications.ActivationLog(path).read()
    if args.instance:
        records = [r for r in records
                   if r.get('instance_uuid') == args.instance]
    records = records[-args.limit:]
    if args.json:
        print(json.dumps(records, indent=1, sort_keys=True))
    elif not records:
        print('No spawns recorded in %s%s.' % (
            path, ' for instance %s' % args.instance if args.instance
            else ''))
    else:
        _print_table([_row(r) for r in records], COLUMNS)
    return 0
