"""The hook and its helper, as the host hands them to a guest.

A substrate guest runs the in-guest hook (guest/nova-substrate-hook) and
its static helper (guest/guestutil.c). Rather than have every operator
bake both into their images, the host installs them through the guest
agent while it builds a substrate (engine.deliver). This module finds the
sources the package ships and compiles the helper for that.

The helper runs as root in every guest made from the substrate, so the
binary is only taken from a cache directory this user made and that no
other local user could have made, written to or swapped.
"""

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid

from nova_substrate.engine import exception
from nova_substrate.engine import files

GUEST_SRC_ENV = 'NOVA_SUBSTRATE_GUEST_SRC'
HOOK_FILE = 'nova-substrate-hook'
GUESTUTIL_SOURCE = 'guestutil.c'
CLOUD_INIT_RUNNER_FILE = 'nova-substrate-cloud-init'
DEFAULT_CACHE_DIR = '/var/lib/nova-substrate/guest-tools'

# Linked statically: one binary works in any x86_64 guest whatever its C
# library, and starts in milliseconds even under TCG.
_CFLAGS = ('-static', '-O2', '-s')
_COMPILE_TIMEOUT_S = 300
_BUILD_PACKAGES = 'gcc and libc6-dev'
_HOOK_VERSION = re.compile(r'^HOOK_VERSION=(\S*)[ \t]*$', re.MULTILINE)


def find_source_dir():
    """The directory holding the hook and guestutil.c.

    Looked up as the test guests do (nova_substrate.guests.base):
    $NOVA_SUBSTRATE_GUEST_SRC, a source tree's guest/ beside the package,
    then where setup.cfg installs it, <prefix>/share/nova-substrate/guest.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.environ.get(GUEST_SRC_ENV),
        os.path.join(here, os.pardir, os.pardir, 'guest'),
        os.path.join(sys.prefix, 'share', 'nova-substrate', 'guest'),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(candidate, HOOK_FILE)):
            return os.path.realpath(candidate)
    raise exception.GuestToolsError(
        'cannot find the guest sources (%s and %s); set %s to the guest/ '
        'directory of nova-substrate' % (HOOK_FILE, GUESTUTIL_SOURCE,
                                         GUEST_SRC_ENV))


def parse_hook_version(text):
    """The HOOK_VERSION=... value in a hook's text, or None."""
    match = _HOOK_VERSION.search(text)
    if match is None:
        return None
    return match.group(1).strip('\'"')


def hook_version(path):
    """The HOOK_VERSION=... value in the hook script at path."""
    version = parse_hook_version(read_file(path).decode('utf-8', 'replace'))
    if not version:
        raise exception.GuestToolsError('%s sets no HOOK_VERSION' % path)
    return version


class GuestTools(object):
    """The host's hook and static helper, for delivery to guests.

    cache_dir holds the compiled helpers, one per guestutil.c: it is
    created 0700 and refused unless this user alone could have written
    it. source_dir defaults to find_source_dir().
    """

    def __init__(self, cache_dir=DEFAULT_CACHE_DIR, source_dir=None):
        self.cache_dir = os.path.abspath(cache_dir)
        self._source_dir = source_dir

    @property
    def source_dir(self):
        if self._source_dir is None:
            self._source_dir = find_source_dir()
        return self._source_dir

    def hook_source(self):
        return os.path.join(self.source_dir, HOOK_FILE)

    def hook_version(self):
        return hook_version(self.hook_source())

    def cloud_init_runner_source(self):
        return os.path.join(self.source_dir, CLOUD_INIT_RUNNER_FILE)

    def guestutil_source(self):
        return os.path.join(self.source_dir, GUESTUTIL_SOURCE)

    def guestutil_binary(self):
        """The path of the static helper, compiled on first use.

        Named by the sha256 of its source, so an upgraded package gets a
        new binary and never a stale one.
        """
        # What is hashed is what is compiled: the source is read once.
        source = read_file(self.guestutil_source())
        path = os.path.join(self.cache_dir, 'guestutil-%s'
                            % hashlib.sha256(source).hexdigest())
        try:
            ensure_private_dir(self.cache_dir)
            if not _is_private_file(path):
                _compile(source, path)
        except OSError as e:
            raise exception.GuestToolsError('cannot build the guest helper '
                                            'in %s: %s' % (self.cache_dir, e))
        return path


def ensure_private_dir(path):
    """Create path 0700 if missing; refuse it unless only we could write it.

    Raises UnsafeCacheDir if path is a symbolic link, is owned by another
    user or is writable by others, or if another user could replace it
    (through a directory above it).
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, 0o755, exist_ok=True)
    _check_ancestors(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise exception.UnsafeCacheDir('%s is a symbolic link' % path)
    if not stat.S_ISDIR(st.st_mode):
        raise exception.UnsafeCacheDir('%s is not a directory' % path)
    if st.st_uid != os.geteuid():
        raise exception.UnsafeCacheDir('%s is owned by uid %d, not by uid %d'
                                       % (path, st.st_uid, os.geteuid()))
    if st.st_mode & 0o022:
        raise exception.UnsafeCacheDir('%s is writable by other users '
                                       '(mode %o)' % (path,
                                                      stat.S_IMODE(
                                                          st.st_mode)))


def _check_ancestors(path):
    """Refuse path unless only root or this user could have changed it.

    Each directory from / down must belong to one of them and be writable
    by no one else, unless it is sticky (/tmp): there others cannot rename
    or remove what is ours. A symbolic link is followed and its target
    checked the same way.
    """
    trusted = (0, os.geteuid())
    for prefix in _prefixes(path):
        st = os.lstat(prefix)
        if st.st_uid not in trusted:
            raise exception.UnsafeCacheDir('%s is owned by uid %d'
                                           % (prefix, st.st_uid))
        if stat.S_ISLNK(st.st_mode):
            # strict: a link loop raises instead of recursing forever.
            _check_ancestors(os.path.realpath(prefix, strict=True))
        elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise exception.UnsafeCacheDir(
                '%s is writable by other users (mode %o)'
                % (prefix, stat.S_IMODE(st.st_mode)))


def _prefixes(path):
    """'/', '/a', '/a/b' for '/a/b'."""
    prefix = os.sep
    yield prefix
    for part in path.split(os.sep):
        if part:
            prefix = os.path.join(prefix, part)
            yield prefix


def _is_private_file(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and
            not st.st_mode & 0o022 and st.st_size > 0)


def _find_compiler():
    """gcc, after checking it can link statically; or MissingBuildTool."""
    gcc = shutil.which('gcc')
    if gcc is None:
        raise exception.MissingBuildTool(
            'compiling the guest helper needs gcc: install the Debian '
            'packages %s' % _BUILD_PACKAGES)
    # gcc prints the bare name when it has no such file: checked here,
    # the link would fail later with a less helpful "cannot find -lc".
    libc = subprocess.run([gcc, '-print-file-name=libc.a'],
                          capture_output=True, text=True, check=False,
                          timeout=_COMPILE_TIMEOUT_S).stdout.strip()
    if not os.path.isabs(libc) or not os.path.isfile(libc):
        raise exception.MissingBuildTool(
            'linking the guest helper statically needs the static C '
            'library (libc.a): install the Debian packages %s'
            % _BUILD_PACKAGES)
    return gcc


def _compile(source, dest):
    """Compile C source into dest, atomically: a temp file, then rename."""
    gcc = _find_compiler()
    tmp = '%s.%s.tmp' % (dest, uuid.uuid4().hex[:12])
    try:
        try:
            result = subprocess.run(
                [gcc] + list(_CFLAGS) + ['-o', tmp, '-x', 'c', '-'],
                input=source, capture_output=True, check=False,
                timeout=_COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise exception.GuestToolsError('gcc did not compile the guest '
                                            'helper in %d s'
                                            % _COMPILE_TIMEOUT_S)
        if result.returncode != 0:
            raise exception.GuestToolsError(
                'gcc failed to compile the guest helper (exit %d): %s'
                % (result.returncode,
                   result.stderr.decode('utf-8', 'replace').strip()[-2000:]))
        os.chmod(tmp, 0o755)
        # On disk before it has its name: a crash must not leave an empty
        # file that later builds take for the helper.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)
    finally:
        files.unlink_if_exists(tmp)


def read_file(path):
    """The bytes of a host file; GuestToolsError if unreadable."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as e:
        raise exception.GuestToolsError('cannot read %s: %s' % (path, e))
