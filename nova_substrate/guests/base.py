"""What the guest recipes share: host look-ups, commands and image steps.

A recipe describes one test guest: which host files and source files go
into it (its digest), what it needs installed on the host, and how to
build its kernel, initrd and disk into an empty directory. A guest that
boots from its disk (its own boot loader, kernel and initramfs inside)
has no kernel, initrd or command line of its own: only the disk.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import typing

from oslo_log import log as logging

from nova_substrate.engine import exception
from nova_substrate.engine import guest_tools

LOG = logging.getLogger(__name__)

GUEST_SRC_ENV = guest_tools.GUEST_SRC_ENV
HOOK_FILE = 'nova-substrate-hook'
GUESTUTIL_SOURCE = 'guestutil.c'
# Where the hook and the helper are installed inside a guest.
GUEST_HOOK_PATH = 'usr/sbin/nova-substrate-hook'
GUEST_GUESTUTIL_PATH = 'usr/sbin/nova-substrate-guestutil'

KERNEL_FLAVOUR = 'cloud-amd64'
BOOT_DIR = '/boot'
MODULES_ROOT = '/lib/modules'

# Build tools live in sbin, which is not on every user's PATH.
_TOOL_PATH = ':'.join([os.environ.get('PATH', ''), '/usr/local/sbin',
                       '/usr/sbin', '/sbin'])
_LIBC_STATIC = ('/usr/lib/x86_64-linux-gnu/libc.a', '/usr/lib64/libc.a',
                '/usr/lib/libc.a')
_PT_INTERP = 3


class GuestBuildError(Exception):
    """A test guest could not be built."""


class MissingPrerequisite(GuestBuildError):
    """Something the build needs is not installed on the host."""

    def __init__(self, guest, what, package):
        super().__init__('the %s guest needs %s: install the Debian package '
                         '%s' % (guest, what, package))
        self.guest = guest
        self.what = what
        self.package = package


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """A built test guest, ready to boot.

    kernel, initrd and disk are absolute paths (disk is a qcow2);
    disk_bytes is the disk's virtual size, disk_file_bytes the size of
    the qcow2 file. A guest that boots from its disk has kernel, initrd
    and cmdline None.
    """
    name: str
    kernel: typing.Optional[str]
    initrd: typing.Optional[str]
    disk: str
    cmdline: typing.Optional[str]
    digest: str
    disk_bytes: int
    disk_file_bytes: int

    @property
    def boots_from_disk(self):
        return self.kernel is None


@dataclasses.dataclass(frozen=True)
class HostKernel:
    version: str
    vmlinuz: str
    initrd: str
    modules_dir: str


class Recipe(object):
    """A test guest's recipe; subclasses define name, cmdline and steps.

    A recipe whose cmdline is None makes a guest that boots from its
    disk: its build writes disk.qcow2 only.
    """

    name = None
    cmdline = None

    def check_prerequisites(self):
        """Raise MissingPrerequisite unless the digest can be computed."""

    def check_build_prerequisites(self):
        """Raise MissingPrerequisite unless the guest can be built."""

    def digest_inputs(self):
        """Yield (label, value) pairs; a value is bytes or a file path."""
        raise NotImplementedError()

    def build(self, out_dir, scratch_dir, progress):
        """Write vmlinuz, initrd.img and disk.qcow2 into out_dir.

        Only disk.qcow2 if the guest boots from its disk.
        """
        raise NotImplementedError()

    @property
    def boots_from_disk(self):
        return self.cmdline is None

    def digest(self):
        """The hash of everything that goes into the image."""
        sha = hashlib.sha256()
        for label, value in self.digest_inputs():
            _hash_item(sha, label.encode(), value)
        return sha.hexdigest()


def _hash_item(sha, label, value):
    sha.update(struct.pack('<Q', len(label)))
    sha.update(label)
    if isinstance(value, bytes):
        sha.update(struct.pack('<Q', len(value)))
        sha.update(value)
        return
    sha.update(struct.pack('<Q', os.path.getsize(value)))
    with open(value, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)


def source_file(module):
    """The source file of a module, for a recipe's digest."""
    path = module.__file__
    if path.endswith('.pyc'):
        path = path[:-1]
    return path


def guest_source_dir():
    """The directory holding the hook and guestutil.c.

    Found as the engine finds what it installs in guests
    (nova_substrate.engine.guest_tools.find_source_dir).
    """
    try:
        return guest_tools.find_source_dir()
    except exception.GuestToolsError as e:
        raise GuestBuildError(str(e))


def hook_path():
    return os.path.join(guest_source_dir(), HOOK_FILE)


def guestutil_source_path():
    return os.path.join(guest_source_dir(), GUESTUTIL_SOURCE)


def find_tool(guest, command, package):
    """The absolute path of command, or MissingPrerequisite."""
    path = shutil.which(command, path=_TOOL_PATH)
    if path is None:
        raise MissingPrerequisite(guest, command, package)
    return path


def check_compiler(guest):
    """guestutil is linked statically: gcc and libc.a are both needed."""
    find_tool(guest, 'gcc', 'gcc')
    if not any(os.path.exists(path) for path in _LIBC_STATIC):
        raise MissingPrerequisite(guest, 'the static C library (libc.a)',
                                  'libc6-dev')


def check_image_tools(guest):
    find_tool(guest, 'mkfs.ext4', 'e2fsprogs')
    find_tool(guest, 'qemu-img', 'qemu-utils')


def _version_key(version):
    return [int(part) if part.isdigit() else part
            for part in re.split(r'(\d+)', version)]


def find_host_kernel(guest, need_initrd=False):
    """The newest Debian cloud kernel installed on the host."""
    prefix = 'vmlinuz-'
    suffix = '-' + KERNEL_FLAVOUR
    try:
        names = os.listdir(BOOT_DIR)
    except OSError:
        names = []
    versions = [name[len(prefix):] for name in names
                if name.startswith(prefix) and name.endswith(suffix)]
    package = 'linux-image-%s' % KERNEL_FLAVOUR
    if not versions:
        raise MissingPrerequisite(guest, 'a kernel %s/vmlinuz-*%s'
                                  % (BOOT_DIR, suffix), package)
    version = max(versions, key=_version_key)
    kernel = HostKernel(
        version=version,
        vmlinuz=os.path.join(BOOT_DIR, prefix + version),
        initrd=os.path.join(BOOT_DIR, 'initrd.img-' + version),
        modules_dir=os.path.join(MODULES_ROOT, version))
    if not os.path.isfile(os.path.join(kernel.modules_dir, 'modules.dep')):
        raise MissingPrerequisite(guest, 'the modules of kernel %s (%s)'
                                  % (version, kernel.modules_dir), package)
    if need_initrd and not os.path.isfile(kernel.initrd):
        raise MissingPrerequisite(guest, 'the initrd of kernel %s (%s)'
                                  % (version, kernel.initrd), package)
    return kernel


def dpkg_version(package):
    """The installed version of a Debian package, or '' if not installed."""
    try:
        result = subprocess.run(
            ['dpkg-query', '-W', '-f', '${Version}', package],
            capture_output=True, text=True, check=False)
    except OSError:
        return ''
    return result.stdout.strip() if result.returncode == 0 else ''


def run(cmd, **kwargs):
    """Run cmd; raise GuestBuildError with its output if it fails."""
    LOG.debug('Running %s', ' '.join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True,
                            check=False, **kwargs)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise GuestBuildError('%s failed (exit %d): %s'
                              % (' '.join(cmd), result.returncode,
                                 output[-2000:]))
    return result.stdout


def elf_interpreter(path):
    """The program interpreter of an ELF64 file, or None if static."""
    with open(path, 'rb') as f:
        header = f.read(64)
        if header[:4] != b'\x7fELF' or header[4] != 2:
            raise GuestBuildError('%s is not a 64-bit ELF file' % path)
        phoff, = struct.unpack_from('<Q', header, 32)
        phentsize, phnum = struct.unpack_from('<HH', header, 54)
        for index in range(phnum):
            f.seek(phoff + index * phentsize)
            p_type, _flags, p_offset = struct.unpack('<IIQ', f.read(16))
            if p_type != _PT_INTERP:
                continue
            f.seek(p_offset)
            return f.read(256).split(b'\0', 1)[0].decode()
    return None


def shared_libraries(binary):
    """The absolute paths ldd lists for binary, the interpreter included."""
    paths = []
    for line in run(['ldd', binary]).splitlines():
        line = line.strip()
        if '=>' in line:
            target = line.split('=>', 1)[1].strip()
            if target.startswith('not found'):
                raise GuestBuildError('%s: library %s not found'
                                      % (binary, line.split()[0]))
            path = target.split(' (', 1)[0].strip()
        else:
            path = line.split(' (', 1)[0].strip()
        if path.startswith('/'):
            paths.append(path)
    return paths


def compile_guestutil(dest):
    run(['gcc', '-static', '-O2', '-s', '-o', dest,
         guestutil_source_path()])
    os.chmod(dest, 0o755)


def make_ext4(guest, content_dir, path, size_bytes, label, offset=0,
              fs_uuid=None):
    """An ext4 filesystem holding content_dir, written into path at offset.

    path must exist and be large enough. The inode tables and journal
    are written out now rather than by the guest kernel's lazy init
    thread, which would otherwise dirty every booted guest's disk and
    memory.
    """
    options = ['lazy_itable_init=0', 'lazy_journal_init=0']
    if offset:
        options.append('offset=%d' % offset)
    cmd = [find_tool(guest, 'mkfs.ext4', 'e2fsprogs'), '-q', '-F',
           '-L', label]
    if fs_uuid:
        cmd += ['-U', fs_uuid]
    cmd += ['-d', content_dir, '-E', ','.join(options), path]
    if offset:
        # Otherwise the size is the file's, which ends past offset.
        cmd.append('%dk' % (size_bytes // 1024))
    run(cmd)


def convert_to_qcow2(guest, raw_path, qcow2_path):
    """A qcow2 copy of a raw image; blocks of zeros take no room in it."""
    run([find_tool(guest, 'qemu-img', 'qemu-utils'), 'convert',
         '-f', 'raw', '-O', 'qcow2', raw_path, qcow2_path])


def make_ext4_qcow2(guest, content_dir, qcow2_path, size_bytes, label):
    """An ext4 filesystem holding content_dir, as a qcow2 image."""
    raw_path = qcow2_path + '.raw'
    with open(raw_path, 'wb') as raw:
        raw.truncate(size_bytes)
    try:
        make_ext4(guest, content_dir, raw_path, size_bytes, label)
        convert_to_qcow2(guest, raw_path, qcow2_path)
    finally:
        os.unlink(raw_path)


def qcow2_virtual_size(guest, path):
    info = json.loads(run([find_tool(guest, 'qemu-img', 'qemu-utils'),
                           'info', '--output=json', path]))
    return int(info['virtual-size'])


def copy_file(src, dest, mode=0o644):
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def replace_file(rootfs, relative, content, mode=0o644):
    """Write a file in rootfs without following a symlink out of it."""
    path = os.path.join(rootfs, relative)
    if os.path.lexists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 mode)
    with os.fdopen(fd, 'w') as f:
        f.write(content)
    os.chmod(path, mode)


def mask_units(rootfs, units):
    """Mask systemd units in rootfs, as systemctl mask would."""
    unit_dir = os.path.join(rootfs, 'etc', 'systemd', 'system')
    for unit in units:
        link = os.path.join(unit_dir, unit)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink('/dev/null', link)


def install_substrate_tools(rootfs, scratch_dir):
    """The activation hook and its helper, where the engine runs them."""
    shutil.copyfile(hook_path(), os.path.join(rootfs, GUEST_HOOK_PATH))
    os.chmod(os.path.join(rootfs, GUEST_HOOK_PATH), 0o755)
    guestutil = os.path.join(scratch_dir, 'nova-substrate-guestutil')
    compile_guestutil(guestutil)
    shutil.copyfile(guestutil, os.path.join(rootfs, GUEST_GUESTUTIL_PATH))
    os.chmod(os.path.join(rootfs, GUEST_GUESTUTIL_PATH), 0o755)
