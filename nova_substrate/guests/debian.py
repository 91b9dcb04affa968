"""The debian test guest: a minimal Debian 12 with systemd.

A realistic guest for the activation path: systemd and udev, the QEMU
guest agent started by udev, OpenSSH, ifupdown with the ISC DHCP client.
It boots the host's cloud kernel and initrd (which carries virtio_blk)
with the host's modules copied in, so hot-plugged NICs and the balloon
find their drivers.
"""

import glob
import os
import shutil
import sys

from nova_substrate.guests import base

NAME = 'debian'
SUITE = 'bookworm'
PACKAGES = ('systemd-sysv', 'udev', 'qemu-guest-agent', 'openssh-server',
            'ifupdown', 'isc-dhcp-client', 'kmod', 'iproute2')
CMDLINE = 'root=/dev/vda rw console=ttyS0'
DISK_BYTES = 2 * 1024 * 1024 * 1024
DISK_LABEL = 'debian-root'
HOSTNAME = 'debian'

MIRROR_ENV = 'NOVA_SUBSTRATE_DEBIAN_MIRROR'
DEFAULT_MIRROR = 'http://deb.debian.org/debian'
APT_SOURCES = '/etc/apt/sources.list'
APT_SOURCES_DIR = '/etc/apt/sources.list.d'

FSTAB = '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n'
HOSTS = ('127.0.0.1\tlocalhost\n'
         '127.0.1.1\t%s\n'
         '::1\t\tlocalhost ip6-localhost ip6-loopback\n'
         'ff02::1\t\tip6-allnodes\n'
         'ff02::2\t\tip6-allrouters\n' % HOSTNAME)
INTERFACES = ('source /etc/network/interfaces.d/*\n\n'
              'auto lo\n'
              'iface lo inet loopback\n')
# Periodic jobs would wake in test guests and dirty disk and memory that
# saved substrates then carry.
MASKED_UNITS = ('apt-daily.timer', 'apt-daily-upgrade.timer',
                'dpkg-db-backup.timer', 'e2scrub_all.timer', 'fstrim.timer')


class DebianRecipe(base.Recipe):

    name = NAME
    cmdline = CMDLINE

    def check_prerequisites(self):
        self._kernel()

    def check_build_prerequisites(self):
        if os.geteuid() != 0:
            raise base.GuestBuildError(
                'building the %s guest needs root (debootstrap and the '
                'ownership of its files)' % NAME)
        base.find_tool(NAME, 'debootstrap', 'debootstrap')
        base.check_compiler(NAME)
        base.check_image_tools(NAME)

    def _kernel(self):
        return base.find_host_kernel(NAME, need_initrd=True)

    def digest_inputs(self):
        kernel = self._kernel()
        yield 'recipe', NAME.encode()
        yield 'source:' + base.__name__, base.source_file(base)
        yield 'source:' + __name__, base.source_file(sys.modules[__name__])
        yield 'hook', base.hook_path()
        yield 'guestutil.c', base.guestutil_source_path()
        yield 'libc6-dev', base.dpkg_version('libc6-dev').encode()
        yield 'debootstrap', base.dpkg_version('debootstrap').encode()
        yield 'kernel-version', kernel.version.encode()
        yield 'vmlinuz', kernel.vmlinuz
        yield 'initrd', kernel.initrd
        yield 'modules.dep', os.path.join(kernel.modules_dir, 'modules.dep')

    def build(self, out_dir, scratch_dir, progress):
        kernel = self._kernel()
        rootfs = os.path.join(scratch_dir, 'rootfs')
        mirror = find_mirror()
        progress('debian guest: debootstrap %s from %s (about a minute)'
                 % (SUITE, mirror))
        debootstrap(NAME, rootfs, PACKAGES, mirror)
        progress('debian guest: configuring')
        _configure(rootfs)
        _install_kernel_modules(rootfs, kernel)
        base.install_substrate_tools(rootfs, scratch_dir)
        base.copy_file(kernel.vmlinuz, os.path.join(out_dir, 'vmlinuz'))
        base.copy_file(kernel.initrd, os.path.join(out_dir, 'initrd.img'))
        progress('debian guest: disk image')
        base.make_ext4_qcow2(NAME, rootfs,
                             os.path.join(out_dir, 'disk.qcow2'),
                             DISK_BYTES, DISK_LABEL)


def _sources_entries():
    """(types, uris, suites, components) of each apt source on the host."""
    entries = []
    list_files = [APT_SOURCES] + sorted(
        glob.glob(os.path.join(APT_SOURCES_DIR, '*.list')))
    for path in list_files:
        entries.extend(_one_line_entries(path))
    for path in sorted(glob.glob(os.path.join(APT_SOURCES_DIR,
                                              '*.sources'))):
        entries.extend(_deb822_entries(path))
    return entries


def _read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _one_line_entries(path):
    for line in _read_lines(path):
        words = line.split('#', 1)[0].split()
        if len(words) < 3:
            continue
        kind, rest = words[0], words[1:]
        if rest[0].startswith('['):
            while rest and not rest[0].endswith(']'):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            yield [kind], [rest[0]], [rest[1]], rest[2:]


def _deb822_entries(path):
    fields = {}
    for line in _read_lines(path) + ['']:
        if line.startswith('#'):
            continue
        if not line.strip():
            if fields.get('enabled', 'yes').lower() != 'no' and fields:
                yield (fields.get('types', '').split(),
                       fields.get('uris', '').split(),
                       fields.get('suites', '').split(),
                       fields.get('components', '').split())
            fields = {}
            continue
        key, sep, value = line.partition(':')
        if sep and not line[0].isspace():
            fields[key.strip().lower()] = value.strip()


def find_mirror():
    """The Debian mirror apt on this host uses for the guest's suite."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return mirror
    for types, uris, suites, components in _sources_entries():
        if 'deb' in types and SUITE in suites and 'main' in components:
            return uris[0]
    return DEFAULT_MIRROR


def debootstrap(guest, rootfs, packages, mirror):
    """A minimal Debian SUITE in rootfs, with packages and what they need."""
    base.run([base.find_tool(guest, 'debootstrap', 'debootstrap'),
              '--variant=minbase', '--include=' + ','.join(packages),
              SUITE, rootfs, mirror],
             env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))


def _clear_root_password(rootfs):
    """Root logs in on the serial console without a password."""
    shadow = os.path.join(rootfs, 'etc', 'shadow')
    # The guest's shadow group need not have the host's number.
    owner = os.stat(shadow)
    with open(shadow) as f:
        lines = f.read().splitlines(True)
    for index, line in enumerate(lines):
        fields = line.split(':')
        if fields[0] == 'root':
            fields[1] = ''
            lines[index] = ':'.join(fields)
    base.replace_file(rootfs, 'etc/shadow', ''.join(lines),
                      owner.st_mode & 0o777)
    os.chown(shadow, owner.st_uid, owner.st_gid)


def _configure(rootfs):
    base.replace_file(rootfs, 'etc/hostname', HOSTNAME + '\n')
    base.replace_file(rootfs, 'etc/hosts', HOSTS)
    base.replace_file(rootfs, 'etc/fstab', FSTAB)
    base.replace_file(rootfs, 'etc/network/interfaces', INTERFACES)
    # Empty: each cold boot of the image makes its own machine-id.
    base.replace_file(rootfs, 'etc/machine-id', '', 0o444)
    # The build host's resolver settings mean nothing in the guest.
    base.replace_file(rootfs, 'etc/resolv.conf', '')
    _clear_root_password(rootfs)
    base.mask_units(rootfs, MASKED_UNITS)
    for deb in glob.glob(os.path.join(rootfs, 'var/cache/apt/archives',
                                      '*.deb')):
        os.unlink(deb)


def _install_kernel_modules(rootfs, kernel):
    dest = os.path.join(rootfs, 'lib', 'modules', kernel.version)
    shutil.copytree(kernel.modules_dir, dest, symlinks=True)
