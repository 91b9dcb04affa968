"""Recorded boot working sets: the extents a boot read, in read order.

A cache fills by copy-on-read, so its clusters are appended to the cache
file in the order the boot first read them. Its allocation map sorted by
host offset is therefore the boot's working set in read order, recorded
without tracing the guest. Replaying the extents in that order through a
cache's copy-on-read path warms another cache of the same image.
"""

import json
import os
import subprocess

from nova_substrate.engine import exception

FORMAT_VERSION = 1


class WorkingSet:
    def __init__(self, name, extents):
        self.name = name
        self.extents = [(int(o), int(n)) for o, n in extents]

    @property
    def bytes(self):
        return sum(n for _, n in self.extents)

    def truncated(self, limit):
        """The first extents, in order, that fit in limit bytes."""
        kept, total = [], 0
        for offset, length in self.extents:
            if total + length > limit:
                length = limit - total
            if length <= 0:
                break
            kept.append((offset, length))
            total += length
        return WorkingSet(self.name, kept)

    def qemu_io_script(self):
        return ''.join('read -q %d %d\n' % extent for extent in self.extents)

    def save(self, path):
        tmp = path + '.tmp'
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  'w') as f:
            json.dump({'version': FORMAT_VERSION, 'name': self.name,
                       'bytes': self.bytes, 'extents': self.extents}, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                doc = json.load(f)
            if doc.get('version') != FORMAT_VERSION:
                raise ValueError('version %r' % doc.get('version'))
            return cls(doc['name'], doc['extents'])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            raise exception.SubstrateError(
                'working-set record %s is unreadable: %s' % (path, e))

    @classmethod
    def from_cache_file(cls, name, cache_file):
        """The extents allocated in a qcow2 cache, in allocation order."""
        # Open the cache alone (no backing), shared with the server that
        # holds it: only its own clusters are mapped.
        spec = json.dumps({'driver': 'qcow2', 'backing': None,
                           'file': {'driver': 'file',
                                    'filename': cache_file}})
        try:
            out = subprocess.run(
                ['qemu-img', 'map', '--output=json', '-U', 'json:' + spec],
                check=True, capture_output=True, text=True).stdout
        except subprocess.CalledProcessError as e:
            raise exception.SubstrateError('qemu-img map of %s failed: %s'
                                           % (cache_file, e.stderr.strip()))
        allocated = [e for e in json.loads(out)
                     if e.get('data') and 'offset' in e]
        allocated.sort(key=lambda e: e['offset'])
        return cls(name, [(e['start'], e['length']) for e in allocated])


def replay(working_set, nbd_url, timeout):
    """Read the working set, in order, from an NBD export."""
    try:
        result = subprocess.run(['qemu-io', '-r', '-f', 'raw', nbd_url],
                                input=working_set.qemu_io_script(),
                                capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise exception.SubstrateError('replaying %s took more than %d s'
                                       % (working_set.name, timeout))
    # qemu-io goes on after a failed read and may still exit 0.
    failed = [line for line in (result.stdout + result.stderr).splitlines()
              if 'failed' in line or 'Could not open' in line]
    if result.returncode or failed:
        raise exception.SubstrateError(
            'replaying %s from %s failed: %s'
            % (working_set.name, nbd_url,
               (failed or [result.stderr.strip()])[0]))
