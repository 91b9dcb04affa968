"""The on-disk cache of built test guests.

Layout: <cache_dir>/<name>-<digest12>/ holds vmlinuz, initrd.img,
disk.qcow2 and guest.json; a guest that boots from its disk has neither
vmlinuz nor initrd.img (null in its guest.json). A guest is built in a
hidden directory beside it and renamed into place, so a reader sees
either no guest or a whole one, even if a build was interrupted. A lock
file per guest name keeps two processes from building the same guest at
once; the loser of the race finds the winner's guest when it gets the
lock.

QEMU runs as another user (libvirt-qemu) and must read the kernel,
initrd and disk, so directories are 0755 and files 0644.
"""

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from oslo_log import log as logging

from nova_substrate.guests import base

LOG = logging.getLogger(__name__)

CACHE_ENV = 'NOVA_SUBSTRATE_GUEST_CACHE'
DEFAULT_CACHE_DIR = '/var/cache/nova-substrate/guests'
MANIFEST = 'guest.json'
KERNEL_FILE = 'vmlinuz'
INITRD_FILE = 'initrd.img'
DISK_FILE = 'disk.qcow2'
DIGEST_CHARS = 12
BUILD_PREFIX = '.build-'


def default_cache_dir():
    return os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR


class GuestCache(object):

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def get(self, recipe, progress):
        """The recipe's guest, built first if the cache lacks it."""
        digest = recipe.digest()
        path = self._guest_dir(recipe.name, digest)
        image = load_guest(path)
        if image is not None:
            return image
        _make_dirs(self.root)
        with self._lock(recipe.name, progress):
            image = load_guest(path)
            if image is None:
                image = self._build(recipe, digest, path, progress)
        return image

    def _guest_dir(self, name, digest):
        return os.path.join(self.root, '%s-%s' % (name,
                                                  digest[:DIGEST_CHARS]))

    @contextlib.contextmanager
    def _lock(self, name, progress):
        fd = os.open(os.path.join(self.root, '.%s.lock' % name),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress('waiting for another build of the %s guest' % name)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _build(self, recipe, digest, path, progress):
        recipe.check_build_prerequisites()
        self._remove_stale_builds(recipe.name)
        if os.path.lexists(path):
            # Only a tree without its manifest can be here: not a guest.
            _remove_tree(path)
        started = time.monotonic()
        progress('building the %s guest in %s' % (recipe.name, path))
        work_dir = tempfile.mkdtemp(
            prefix='%s%s-' % (BUILD_PREFIX, recipe.name), dir=self.root)
        try:
            out_dir = os.path.join(work_dir, 'guest')
            scratch_dir = os.path.join(work_dir, 'scratch')
            os.mkdir(out_dir)
            os.mkdir(scratch_dir)
            recipe.build(out_dir, scratch_dir, progress)
            _write_manifest(recipe, digest, out_dir,
                            time.monotonic() - started)
            _make_readable(out_dir)
            os.rename(out_dir, path)
            _fsync_dir(self.root)
        finally:
            _remove_tree(work_dir)
        progress('built the %s guest in %.0f s'
                 % (recipe.name, time.monotonic() - started))
        self._remove_other_versions(recipe.name, keep=path)
        image = load_guest(path)
        if image is None:
            raise base.GuestBuildError('the %s guest built in %s is '
                                       'incomplete' % (recipe.name, path))
        return image

    def _entries(self, pattern):
        return [os.path.join(self.root, entry)
                for entry in sorted(os.listdir(self.root))
                if pattern.match(entry)]

    def _remove_stale_builds(self, name):
        """Remove what interrupted builds of this guest left behind."""
        pattern = re.compile(re.escape(BUILD_PREFIX + name + '-'))
        for path in self._entries(pattern):
            LOG.info('Removing %s, left by an interrupted build', path)
            _remove_tree(path)

    def _remove_other_versions(self, name, keep):
        pattern = re.compile(r'%s-[0-9a-f]{%d}$' % (re.escape(name),
                                                    DIGEST_CHARS))
        for path in self._entries(pattern):
            if path != keep:
                LOG.info('Removing %s, an older build of the %s guest',
                         path, name)
                _remove_tree(path)


def load_guest(path):
    """The GuestImage in path, or None if there is no complete guest."""
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    disk = os.path.join(path, manifest['disk'])
    kernel, initrd = [_boot_file(path, manifest.get(key))
                      for key in ('kernel', 'initrd')]
    if not all(os.path.isfile(name) for name in (kernel, initrd, disk)
               if name is not None):
        return None
    return base.GuestImage(
        name=manifest['name'], kernel=kernel, initrd=initrd, disk=disk,
        cmdline=manifest.get('cmdline'), digest=manifest['digest'],
        disk_bytes=manifest['disk_bytes'],
        disk_file_bytes=os.path.getsize(disk))


def _boot_file(path, name):
    """The path of a direct-boot file; None for a guest booting its disk."""
    return None if name is None else os.path.join(path, name)


def _write_manifest(recipe, digest, out_dir, build_seconds):
    direct_boot = not recipe.boots_from_disk
    manifest = {
        'name': recipe.name,
        'digest': digest,
        'cmdline': recipe.cmdline,
        'kernel': KERNEL_FILE if direct_boot else None,
        'initrd': INITRD_FILE if direct_boot else None,
        'disk': DISK_FILE,
        'disk_bytes': base.qcow2_virtual_size(
            recipe.name, os.path.join(out_dir, DISK_FILE)),
        'build_seconds': round(build_seconds, 1),
        'built_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }
    with open(os.path.join(out_dir, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')
        f.flush()
        os.fsync(f.fileno())


def _make_dirs(path):
    """Create path and its missing parents, each 0755 whatever the umask."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)
            os.chmod(directory, 0o755)
    _warn_if_unreachable(path)


def _warn_if_unreachable(path):
    while True:
        if not os.stat(path).st_mode & 0o001:
            LOG.warning('%s is not searchable by other users: QEMU, running '
                        'as libvirt-qemu, will not reach the guests cached '
                        'below it', path)
            return
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _make_readable(top):
    os.chmod(top, 0o755)
    for directory, subdirs, files in os.walk(top):
        for name in subdirs:
            os.chmod(os.path.join(directory, name), 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mounts_under(path):
    prefix = path.rstrip('/') + '/'
    mounts = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            mount_point = line.split()[4].replace('\\040', ' ')
            if mount_point.startswith(prefix):
                mounts.append(mount_point)
    return sorted(mounts, key=len, reverse=True)


def _remove_tree(path):
    """rmtree, after unmounting what a killed debootstrap left mounted.

    Otherwise rmtree would descend into the host's /proc or /sys.
    """
    if not os.path.lexists(path):
        return
    for mount_point in _mounts_under(os.path.realpath(path)):
        subprocess.run(['umount', '-l', mount_point], check=False,
                       capture_output=True)
    if _mounts_under(os.path.realpath(path)):
        raise base.GuestBuildError('cannot remove %s: file systems are '
                                   'still mounted below it' % path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
