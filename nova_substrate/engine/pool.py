"""The dock: substrate memory states on tmpfs, and their frozen disk layers.

Layout under the pool directory (tmpfs, 0700, root):

    templates/<key>/template.save   memory state saved by the build
    templates/<key>/meta.json       what the build recorded
    ready/<key>/<sid>.save          claimable substrates: private copies of
                                    the template, one per activation
    claimed/<sid>.save              taken by an activation, deleted by it
    tmp/                            copies being written
    .lock                           serializes changes other than claims

and under the layer directory (persistent, 0711, root):

    <layer_id>/layer.qcow2          the disk as the template's guest left it
    <layer_id>/users/<domain uuid>  one marker per clone whose overlay sits
                                    on the layer

A claim is a rename() from ready/ to claimed/: two activations can never
take the same substrate, and no lock is needed on the activation path.
Copies are made off that path (fill()), so an activation only rewrites a
header in place. A layer outlives its template while clones use it.
"""

import contextlib
import json
import os
import re
import shutil
import time
import uuid

from oslo_log import log as logging

from nova_substrate.engine import exception
from nova_substrate.engine import files
from nova_substrate.engine import saveimage

LOG = logging.getLogger(__name__)

KEY_RE = re.compile(r'^[0-9a-f]{8,64}$')
TEMPLATE_FILE = 'template.save'
META_FILE = 'meta.json'
LAYER_FILE = 'layer.qcow2'
# Fields a template's meta.json must carry to be adopted after a restart.
META_FIELDS = ('key', 'layer_id', 'stream_sha256', 'stream_bytes',
               'memory_mb', 'vcpus', 'created')


def _fsize(path):
    """Bytes of memory a file on tmpfs really holds."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


class Template(object):
    """A docked template: a generalized guest's memory state and meta."""

    def __init__(self, pool, key, meta):
        self.pool = pool
        self.key = key
        self.meta = meta

    @property
    def dir(self):
        return os.path.join(self.pool.path, 'templates', self.key)

    @property
    def save_path(self):
        return os.path.join(self.dir, TEMPLATE_FILE)

    @property
    def layer_path(self):
        return self.pool.layer_file(self.meta['layer_id'])

    @property
    def stream_bytes(self):
        return self.meta['stream_bytes']

    @property
    def last_used(self):
        try:
            return os.stat(os.path.join(self.dir, META_FILE)).st_mtime
        except FileNotFoundError:
            return 0.0

    def touch(self):
        with contextlib.suppress(FileNotFoundError):
            os.utime(os.path.join(self.dir, META_FILE))


class Claim(object):
    """A substrate taken by one activation; the file is the caller's."""

    def __init__(self, template, path):
        self.template = template
        self.path = path

    @property
    def key(self):
        return self.template.key

    def discard(self):
        files.unlink_if_exists(self.path)


class SubstratePool(object):

    def __init__(self, path, layer_path, budget_bytes):
        self.path = os.path.abspath(path)
        self.layer_root = os.path.abspath(layer_path)
        self.budget_bytes = budget_bytes
        # QEMU, as user libvirt-qemu, opens the layers (libvirt relabels
        # each file it uses), so their directories are traversable but not
        # listable; memory states are read by libvirtd as root only.
        for d, mode in ((self.path, 0o700), (self.layer_root, 0o711)):
            os.makedirs(d, mode=mode, exist_ok=True)
            os.chmod(d, mode)
        for sub in ('templates', 'ready', 'claimed', 'tmp'):
            os.makedirs(os.path.join(self.path, sub), mode=0o700,
                        exist_ok=True)

    # -- locking ---------------------------------------------------------

    def locked(self):
        return files.locked(os.path.join(self.path, '.lock'))

    # -- paths -----------------------------------------------------------

    def layer_dir(self, layer_id):
        return os.path.join(self.layer_root, layer_id)

    def layer_file(self, layer_id):
        return os.path.join(self.layer_dir(layer_id), LAYER_FILE)

    def _ready_dir(self, key):
        return os.path.join(self.path, 'ready', key)

    def tmp_path(self, suffix=''):
        return os.path.join(self.path, 'tmp', uuid.uuid4().hex + suffix)

    # -- layers ----------------------------------------------------------

    def new_layer(self):
        """A fresh directory for a build's disk layer; returns its id."""
        layer_id = uuid.uuid4().hex
        os.makedirs(os.path.join(self.layer_dir(layer_id), 'users'),
                    mode=0o700)
        os.chmod(self.layer_dir(layer_id), 0o711)
        return layer_id

    def add_layer_user(self, layer_id, domain_uuid):
        users = os.path.join(self.layer_dir(layer_id), 'users')
        with open(os.path.join(users, domain_uuid), 'w'):
            pass

    def remove_layer_user(self, layer_id, domain_uuid):
        files.unlink_if_exists(os.path.join(self.layer_dir(layer_id),
                                            'users', domain_uuid))

    def layers(self):
        """Ids of every layer on disk."""
        try:
            return sorted(os.listdir(self.layer_root))
        except FileNotFoundError:
            return []

    def layers_of(self, domain_uuid):
        """Ids of the layers domain_uuid is recorded as using."""
        return [layer_id for layer_id in self.layers()
                if os.path.exists(os.path.join(self.layer_dir(layer_id),
                                               'users', domain_uuid))]

    def layer_users(self, layer_id):
        try:
            return sorted(os.listdir(os.path.join(self.layer_dir(layer_id),
                                                  'users')))
        except FileNotFoundError:
            return []

    def collect_layers(self, is_alive=None):
        """Delete layers no template and no live clone uses any more.

        is_alive(domain_uuid) tells whether a recorded user still exists;
        markers of users that do not are dropped first.
        """
        removed = []
        with self.locked():
            in_use = {t.meta['layer_id'] for t in self.templates()}
            for layer_id in os.listdir(self.layer_root):
                if layer_id in in_use:
                    continue
                for user in self.layer_users(layer_id):
                    if is_alive is not None and not is_alive(user):
                        self.remove_layer_user(layer_id, user)
                if not self.layer_users(layer_id):
                    shutil.rmtree(self.layer_dir(layer_id),
                                  ignore_errors=True)
                    removed.append(layer_id)
        return removed

    # -- templates -------------------------------------------------------

    def add_template(self, key, save_file, meta):
        """Dock the memory state save_file (already in tmp/) for key.

        meta must carry META_FIELDS. Evicts least recently used keys when
        the budget requires it; raises PoolFull when it cannot.
        """
        if not KEY_RE.match(key):
            raise ValueError('substrate key %r is not a hex digest' % key)
        missing = [f for f in META_FIELDS if f not in meta]
        if missing:
            raise ValueError('template meta lacks %s' % ', '.join(missing))
        with self.locked():
            old = self.get(key)
            self._make_room(_fsize(save_file), keep=None)
            staging = self.tmp_path('.template')
            os.mkdir(staging, 0o700)
            os.rename(save_file, os.path.join(staging, TEMPLATE_FILE))
            os.chmod(os.path.join(staging, TEMPLATE_FILE), 0o600)
            with open(os.path.join(staging, META_FILE), 'w') as f:
                json.dump(meta, f, indent=1, sort_keys=True)
            os.chmod(os.path.join(staging, META_FILE), 0o600)
            if old is not None:
                self._remove_key(key)
            os.rename(staging, os.path.join(self.path, 'templates', key))
            os.makedirs(self._ready_dir(key), mode=0o700, exist_ok=True)
        LOG.info('Docked substrate template %s (%d bytes)', key,
                 meta['stream_bytes'])
        return self.get(key)

    def get(self, key):
        """The template for key, or None."""
        if not KEY_RE.match(key):
            return None
        try:
            with open(os.path.join(self.path, 'templates', key,
                                   META_FILE)) as f:
                meta = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        return Template(self, key, meta)

    def templates(self):
        found = []
        for key in sorted(os.listdir(os.path.join(self.path, 'templates'))):
            t = self.get(key)
            if t is not None:
                found.append(t)
        return found

    def ready_count(self, key):
        try:
            return sum(1 for n in os.listdir(self._ready_dir(key))
                       if n.endswith('.save'))
        except FileNotFoundError:
            return 0

    # -- substrates ------------------------------------------------------

    def fill(self, key, count):
        """Copy the template until key has count ready substrates.

        Returns how many were added. Stops early, without error, when the
        budget has no room left for another copy.
        """
        added = 0
        with self.locked():
            template = self.get(key)
            if template is None:
                raise exception.NoSubstrate('no template for key %s' % key)
            size = _fsize(template.save_path)
            while self.ready_count(key) < count:
                try:
                    self._make_room(size, keep=key)
                except exception.PoolFull:
                    break
                tmp = self._copy_template(template)
                os.rename(tmp, os.path.join(self._ready_dir(key),
                                            uuid.uuid4().hex + '.save'))
                added += 1
        return added

    def _copy_template(self, template):
        tmp = self.tmp_path('.save')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(template.save_path, 'rb') as src:
                # In-kernel copy: no page passes through this process.
                remaining = os.fstat(src.fileno()).st_size
                while remaining:
                    n = os.copy_file_range(src.fileno(), fd, remaining)
                    if not n:
                        raise exception.SubstrateError(
                            'template %s shrank while being copied'
                            % template.key)
                    remaining -= n
        except BaseException:
            os.close(fd)
            files.unlink_if_exists(tmp)
            raise
        os.close(fd)
        return tmp

    def claim(self, key, copy_if_empty=False):
        """Take a ready substrate of key for one activation.

        Returns a Claim whose file belongs to the caller, or raises
        NoSubstrate. With copy_if_empty, an empty key with a template gets
        a fresh copy made on the spot (slower, still no boot).
        """
        template = self.get(key)
        if template is None:
            raise exception.NoSubstrate('no substrate for key %s' % key)
        ready = self._ready_dir(key)
        try:
            names = os.listdir(ready)
        except FileNotFoundError:
            names = []
        for name in names:
            if not name.endswith('.save'):
                continue
            target = os.path.join(self.path, 'claimed', name)
            try:
                os.rename(os.path.join(ready, name), target)
            except FileNotFoundError:
                continue    # another activation took it first
            template.touch()
            return Claim(template, target)
        if copy_if_empty:
            tmp = self._copy_template(template)
            target = os.path.join(self.path, 'claimed',
                                  os.path.basename(tmp))
            os.rename(tmp, target)
            template.touch()
            return Claim(template, target)
        raise exception.NoSubstrate('all substrates of key %s are taken'
                                    % key)

    # -- budget and eviction ---------------------------------------------

    def key_bytes(self, key):
        total = _fsize(os.path.join(self.path, 'templates', key,
                                    TEMPLATE_FILE))
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self._ready_dir(key)):
                total += _fsize(os.path.join(self._ready_dir(key), name))
        return total

    def usage_bytes(self):
        total = 0
        for root, _dirs, names in os.walk(self.path):
            total += sum(_fsize(os.path.join(root, f)) for f in names)
        return total

    def _make_room(self, nbytes, keep, limit=None):
        """Evict least recently used keys (but keep) until nbytes fit.

        limit defaults to the budget; no budget means no limit.
        """
        limit = self.budget_bytes if limit is None else limit
        if not limit:
            return
        used = self.usage_bytes()
        if used + nbytes <= limit:
            return
        victims = sorted((t for t in self.templates() if t.key != keep),
                         key=lambda t: t.last_used)
        for victim in victims:
            LOG.info('Evicting substrate %s to make room for %d bytes',
                     victim.key, nbytes)
            used -= self.key_bytes(victim.key)
            self._remove_key(victim.key)
            if used + nbytes <= limit:
                return
        raise exception.PoolFull(
            'memory budget of %d bytes cannot hold %d more bytes (%d in '
            'use)' % (limit, nbytes, used))

    def evict(self, nbytes):
        """Free at least nbytes by removing least recently used keys.

        Returns the bytes freed (less than asked when the pool is empty).
        """
        with self.locked():
            before = self.usage_bytes()
            with contextlib.suppress(exception.PoolFull):
                self._make_room(0, keep=None, limit=max(before - nbytes, 1))
            return before - self.usage_bytes()

    def remove(self, key):
        with self.locked():
            return self._remove_key(key)

    def _remove_key(self, key):
        """Drop the template and ready copies; the layer stays for users."""
        found = False
        for d in (os.path.join(self.path, 'templates', key),
                  self._ready_dir(key)):
            if os.path.isdir(d):
                # Rename first, so a concurrent get() or claim() never sees
                # a half-deleted directory.
                doomed = self.tmp_path('.doomed')
                os.rename(d, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                found = True
        return found

    # -- recovery --------------------------------------------------------

    def recover(self, verify_digest=True):
        """Adopt what a previous process left valid, delete the rest.

        Returns a dict with the keys adopted and (path, reason) pairs of
        what was removed.
        """
        adopted, removed = [], []
        with self.locked():
            for leftover in ('tmp', 'claimed'):
                d = os.path.join(self.path, leftover)
                for name in os.listdir(d):
                    path = os.path.join(d, name)
                    shutil.rmtree(path) if os.path.isdir(path) else (
                        os.unlink(path))
                    removed.append((path, 'left by an interrupted %s' % (
                        'copy' if leftover == 'tmp' else 'activation')))
            for key in sorted(os.listdir(os.path.join(self.path,
                                                      'templates'))):
                reason = self._check_template(key, verify_digest)
                if reason:
                    removed.append((os.path.join(self.path, 'templates',
                                                 key), reason))
                    self._remove_key(key)
                    continue
                template = self.get(key)
                for name in os.listdir(self._ready_dir(key)):
                    path = os.path.join(self._ready_dir(key), name)
                    reason = self._check_copy(template, path, verify_digest)
                    if reason:
                        removed.append((path, reason))
                        files.unlink_if_exists(path)
                adopted.append(key)
            for key in os.listdir(os.path.join(self.path, 'ready')):
                if self.get(key) is None:
                    path = self._ready_dir(key)
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append((path, 'no template'))
        for path, reason in removed:
            LOG.warning('Removed %s from the substrate pool: %s', path,
                        reason)
        return {'adopted': adopted, 'removed': removed}

    def _check_template(self, key, verify_digest):
        if not KEY_RE.match(key):
            return 'not a substrate key'
        template = self.get(key)
        if template is None:
            return 'meta.json missing or unreadable'
        missing = [f for f in META_FIELDS if f not in template.meta]
        if missing:
            return 'meta.json lacks %s' % ', '.join(missing)
        if not os.path.exists(template.layer_path):
            return 'disk layer %s is missing' % template.layer_path
        return self._check_copy(template, template.save_path, verify_digest)

    @staticmethod
    def _check_copy(template, path, verify_digest):
        try:
            header = saveimage.check(path, template.stream_bytes)
            if verify_digest:
                digest, _ = saveimage.stream_digest(path,
                                                    header.stream_offset)
                if digest != template.meta['stream_sha256']:
                    return 'memory state checksum mismatch'
        except (exception.SaveImageError, OSError) as e:
            return str(e)
        return None

    # -- listing ---------------------------------------------------------

    def describe(self):
        """One dict per key, for the command line and for reporting."""
        now = time.time()
        rows = []
        for t in self.templates():
            rows.append({
                'key': t.key,
                'ready': self.ready_count(t.key),
                'bytes': self.key_bytes(t.key),
                'template_bytes': _fsize(t.save_path),
                'memory_mb': t.meta['memory_mb'],
                'vcpus': t.meta['vcpus'],
                'layer_id': t.meta['layer_id'],
                'layer_users': len(self.layer_users(t.meta['layer_id'])),
                'created': t.meta['created'],
                'idle_s': round(now - t.last_used, 1),
                'labels': t.meta.get('labels', {}),
            })
        return rows
