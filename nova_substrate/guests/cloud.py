"""The cloud test guest: a Debian 12 cloud image, made as Debian makes them.

Where tiny and debian boot the host's kernel directly, this guest boots
from its own disk, as an operator's image does: GRUB in the MBR of an
msdos-partitioned disk (BIOS boot) loads the kernel and initramfs that
the image's linux-image-cloud-amd64 installed, and finds the one ext4
partition, from 1 MiB on, by its UUID.

Nothing of an instance is baked in. cloud-init makes it at first boot
from a config drive (label config-2), from a NoCloud seed named in the
SMBIOS serial number (ds=nocloud;i=ID;h=HOST) or from the OpenStack
metadata service: the default user debian (Debian's cloud.cfg names it)
with the instance's keys, the SSH host keys, the hostname, the network
(rendered for ifupdown, as on Debian 12's cloud images). The image has
no SSH host keys, an empty machine-id, no root password and no apt
caches. Everything else is as Debian ships it, but the default locale.
"""

import contextlib
import glob
import os
import struct
import sys
import uuid

from nova_substrate.guests import base
from nova_substrate.guests import debian

NAME = 'cloud'
PACKAGES = ('systemd-sysv', 'udev', 'kmod', 'linux-image-cloud-amd64',
            'grub-pc', 'initramfs-tools', 'cloud-init',
            # debootstrap's resolver does not satisfy python3-cryptography's
            # virtual python3-cffi-backend-api-max: without it cloud-init
            # is left unconfigured.
            'python3-cffi-backend',
            'openssh-server', 'qemu-guest-agent', 'sudo',
            'ifupdown', 'isc-dhcp-client', 'iproute2', 'cloud-guest-utils')
# The host's GRUB goes into the image: its boot sector, core image and
# modules.
HOST_GRUB_PACKAGES = ('grub2-common', 'grub-pc-bin')
GRUB_PC_DIR = '/usr/lib/grub/i386-pc'
# Built into GRUB's core image: what it needs to read /boot/grub.
GRUB_CORE_MODULES = 'part_msdos ext2'

DISK_BYTES = 2 * 1024 * 1024 * 1024
SECTOR_BYTES = 512
# The gap before the partition holds GRUB's core image.
PARTITION_START = 1024 * 1024
PARTITION_BYTES = DISK_BYTES - PARTITION_START
PARTITION_TYPE_LINUX = 0x83
PARTITION_ACTIVE = 0x80
DISK_LABEL = 'cloud-root'
KERNEL_ARGS = 'console=tty0 console=ttyS0,115200'

HOSTNAME = 'localhost'
HOSTS = ('127.0.0.1\tlocalhost\n'
         '::1\t\tlocalhost ip6-localhost ip6-loopback\n'
         'ff02::1\t\tip6-allnodes\n'
         'ff02::2\t\tip6-allrouters\n')
FSTAB = 'UUID=%s\t/\text4\trw,discard,errors=remount-ro\t0\t1\n'
# debootstrap leaves the locales package without a default locale; then
# cloud-init's locale module sets en_US.UTF-8, which is not generated,
# and its update-locale fails the config stage. C.UTF-8 is always there.
LOCALE = 'LANG=C.UTF-8\n'
CLOUD_CFG = 'etc/cloud/cloud.cfg.d/90_nova_substrate.cfg'
# ds-identify reads the list only when it is on one line.
CLOUD_CFG_CONTENT = (
    '# A config drive (label config-2), a NoCloud seed named in the SMBIOS\n'
    '# serial number (ds=nocloud;i=ID;h=HOST), the OpenStack metadata\n'
    '# service.\n'
    'datasource_list: [ NoCloud, ConfigDrive, OpenStack, None ]\n')
# What update-grub in the guest needs to write the same menu again.
GRUB_DEFAULTS = 'etc/default/grub.d/nova-substrate.cfg'
GRUB_DEFAULTS_CONTENT = (
    'GRUB_TIMEOUT=0\n'
    'GRUB_CMDLINE_LINUX="%s"\n'
    'GRUB_TERMINAL="console serial"\n'
    'GRUB_SERIAL_COMMAND="serial --speed=115200"\n' % KERNEL_ARGS)
GRUB_CFG = 'boot/grub/grub.cfg'
# grub-mkconfig cannot probe a root that is no block device of the
# build host, so the build writes the menu itself.
GRUB_CFG_CONTENT = '''\
# Written by the build of nova-substrate's cloud guest; update-grub in
# the guest writes it anew from /etc/default/grub.
set default=0
set timeout=0
serial --speed=115200
terminal_input console serial
terminal_output console serial
insmod part_msdos
insmod ext2
search --no-floppy --fs-uuid --set=root %(uuid)s
menuentry 'Debian GNU/Linux' {
    linux /boot/vmlinuz-%(version)s root=UUID=%(uuid)s ro %(args)s
    initrd /boot/initrd.img-%(version)s
}
'''


class CloudRecipe(base.Recipe):

    name = NAME
    # It boots from its disk.
    cmdline = None

    def check_build_prerequisites(self):
        if os.geteuid() != 0:
            raise base.GuestBuildError(
                'building the %s guest needs root (debootstrap, the '
                'ownership of its files and a loop mount)' % NAME)
        base.find_tool(NAME, 'debootstrap', 'debootstrap')
        base.check_compiler(NAME)
        base.check_image_tools(NAME)
        base.find_tool(NAME, 'mount', 'mount')
        base.find_tool(NAME, 'umount', 'mount')
        base.find_tool(NAME, 'grub-install', 'grub2-common')
        if not os.path.isfile(os.path.join(GRUB_PC_DIR, 'boot.img')):
            raise base.MissingPrerequisite(
                NAME, 'GRUB for BIOS PCs (%s)' % GRUB_PC_DIR, 'grub-pc-bin')

    def digest_inputs(self):
        yield 'recipe', NAME.encode()
        for module in (base, debian, sys.modules[__name__]):
            yield 'source:' + module.__name__, base.source_file(module)
        yield 'hook', base.hook_path()
        yield 'guestutil.c', base.guestutil_source_path()
        for package in ('libc6-dev', 'debootstrap') + HOST_GRUB_PACKAGES:
            yield package, base.dpkg_version(package).encode()
        yield 'packages', ','.join(PACKAGES).encode()

    def build(self, out_dir, scratch_dir, progress):
        rootfs = os.path.join(scratch_dir, 'rootfs')
        mirror = debian.find_mirror()
        progress('cloud guest: debootstrap %s from %s (a minute or two)'
                 % (debian.SUITE, mirror))
        debian.debootstrap(NAME, rootfs, PACKAGES, mirror)
        progress('cloud guest: configuring')
        fs_uuid = str(uuid.uuid4())
        _configure(rootfs, fs_uuid, _image_kernel(rootfs))
        base.install_substrate_tools(rootfs, scratch_dir)
        progress('cloud guest: disk image and boot loader')
        raw_path = os.path.join(scratch_dir, 'disk.raw')
        _make_disk(rootfs, raw_path, fs_uuid,
                   os.path.join(scratch_dir, 'mnt'))
        base.convert_to_qcow2(NAME, raw_path,
                              os.path.join(out_dir, 'disk.qcow2'))


def _image_kernel(rootfs):
    """The version of the kernel the image's kernel package installed."""
    boot = os.path.join(rootfs, 'boot')
    versions = sorted(name[len('vmlinuz-'):] for name in os.listdir(boot)
                      if name.startswith('vmlinuz-'))
    if len(versions) != 1:
        raise base.GuestBuildError('the %s guest should have one kernel in '
                                   '/boot, not %s' % (NAME, versions))
    version = versions[0]
    if not os.path.isfile(os.path.join(boot, 'initrd.img-' + version)):
        raise base.GuestBuildError('the %s guest has no initramfs for its '
                                   'kernel %s' % (NAME, version))
    return version


def _configure(rootfs, fs_uuid, kernel_version):
    base.replace_file(rootfs, 'etc/hostname', HOSTNAME + '\n')
    base.replace_file(rootfs, 'etc/hosts', HOSTS)
    base.replace_file(rootfs, 'etc/fstab', FSTAB % fs_uuid)
    base.replace_file(rootfs, 'etc/default/locale', LOCALE)
    # Empty: each cold boot of the image makes its own machine-id.
    base.replace_file(rootfs, 'etc/machine-id', '', 0o444)
    # The build host's resolver settings mean nothing in the guest.
    base.replace_file(rootfs, 'etc/resolv.conf', '')
    # cloud-init makes them for each instance.
    for key in glob.glob(os.path.join(rootfs, 'etc/ssh/ssh_host_*')):
        os.unlink(key)
    base.replace_file(rootfs, CLOUD_CFG, CLOUD_CFG_CONTENT)
    for relative in (GRUB_DEFAULTS, GRUB_CFG):
        os.makedirs(os.path.join(rootfs, os.path.dirname(relative)),
                    exist_ok=True)
    base.replace_file(rootfs, GRUB_DEFAULTS, GRUB_DEFAULTS_CONTENT)
    base.replace_file(rootfs, GRUB_CFG, GRUB_CFG_CONTENT % {
        'uuid': fs_uuid, 'version': kernel_version, 'args': KERNEL_ARGS})
    base.mask_units(rootfs, debian.MASKED_UNITS)
    _clean_apt(rootfs)


def _clean_apt(rootfs):
    """Drop what apt fetched for the build: packages, lists, caches.

    The guest's apt-get update fetches lists that are current then.
    """
    patterns = ('var/cache/apt/archives/*.deb', 'var/cache/apt/*.bin',
                'var/lib/apt/lists/*')
    for pattern in patterns:
        for path in glob.glob(os.path.join(rootfs, pattern)):
            if os.path.isfile(path) and os.path.basename(path) != 'lock':
                os.unlink(path)


def msdos_label(disk_bytes, start_bytes, disk_id):
    """The first sector of a disk with one active Linux partition.

    The partition runs from start_bytes to the end of the disk. The
    first 440 bytes, for boot code, are left zero: grub-install fills
    them and keeps the rest.
    """
    first = start_bytes // SECTOR_BYTES
    last = disk_bytes // SECTOR_BYTES - 1
    entry = struct.pack('<B3sB3sII', PARTITION_ACTIVE, _chs(first),
                        PARTITION_TYPE_LINUX, _chs(last), first,
                        last - first + 1)
    return (bytes(440) + struct.pack('<I', disk_id) + bytes(2) + entry +
            bytes(3 * 16) + b'\x55\xaa')


def _chs(lba):
    """A sector's cylinder/head/sector address, as partitioners write it.

    Nothing reads it any more, but old firmware does: the geometry is the
    conventional 255 heads of 63 sectors, and a sector beyond cylinder
    1023 gets the largest address.
    """
    heads, sectors = 255, 63
    cylinder = lba // (heads * sectors)
    if cylinder > 1023:
        return b'\xfe\xff\xff'
    head = lba // sectors % heads
    sector = lba % sectors + 1
    return bytes([head, sector | ((cylinder >> 8) << 6), cylinder & 0xff])


def _make_disk(rootfs, raw_path, fs_uuid, mount_point):
    """The raw disk: partition table, root filesystem, boot loader."""
    with open(raw_path, 'wb') as raw:
        raw.truncate(DISK_BYTES)
        raw.write(msdos_label(DISK_BYTES, PARTITION_START,
                              struct.unpack('<I', os.urandom(4))[0]))
    base.make_ext4(NAME, rootfs, raw_path, PARTITION_BYTES, DISK_LABEL,
                   offset=PARTITION_START, fs_uuid=fs_uuid)
    with _partition_mounted(raw_path, mount_point):
        _install_grub(raw_path, mount_point)


@contextlib.contextmanager
def _partition_mounted(raw_path, mount_point):
    """The root partition of the raw disk, mounted at mount_point.

    The loop device covers the partition alone (offset and size): the
    build host's kernel may not read msdos partition tables (these
    hosts' kernels do not, so losetup --partscan finds no partition).
    mount sets the loop device up to be released when the filesystem is
    unmounted, so the lazy unmount of what an interrupted build left
    (cache._remove_tree) releases it too.
    """
    os.mkdir(mount_point)
    base.run([base.find_tool(NAME, 'mount', 'mount'), '-t', 'ext4', '-o',
              'loop,offset=%d,sizelimit=%d' % (PARTITION_START,
                                               PARTITION_BYTES),
              raw_path, mount_point])
    try:
        yield
    finally:
        base.run([base.find_tool(NAME, 'umount', 'mount'), mount_point])


def _install_grub(raw_path, mount_point):
    """GRUB's boot sector and core image on the disk, its modules in /boot.

    grub-install sees the loop device, not a partition of the disk: it
    embeds a search for the filesystem's UUID in the core image, and
    the modules it must read the partition with.
    """
    base.run([base.find_tool(NAME, 'grub-install', 'grub2-common'),
              '--target=i386-pc',
              '--boot-directory=' + os.path.join(mount_point, 'boot'),
              '--modules=' + GRUB_CORE_MODULES, raw_path])
