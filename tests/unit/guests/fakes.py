"""A fake build host and a fake recipe for the guest builder's tests.

FakeHost stands in for everything a recipe looks up on the host: the
cloud kernel in /boot with its modules, busybox, the guest agent and
ssh-keygen, the build tools, GRUB and the guest sources (a copy of
guest/, found through NOVA_SUBSTRATE_GUEST_SRC). Nothing is built and nothing
outside its temporary directory is read or written.
"""

import os
import shutil
import stat
import struct

import fixtures

from nova_substrate.guests import base
from nova_substrate.guests import tiny

KERNEL_VERSION = '6.1.0-28-cloud-amd64'
DISK_BYTES = 4 * 1024 * 1024
_PT_LOAD = 1
_PT_INTERP = 3


def elf64(interpreter=None):
    """A minimal x86_64 ELF file: static, or dynamic with interpreter."""
    phoff = 64
    phentsize = 56
    data_offset = phoff + phentsize
    header = bytearray(64)
    header[:7] = b'\x7fELF\x02\x01\x01'
    struct.pack_into('<HHI', header, 16, 2, 62, 1)
    struct.pack_into('<Q', header, 32, phoff)
    struct.pack_into('<HHHH', header, 52, 64, phentsize, 1, 64)
    p_type = _PT_LOAD if interpreter is None else _PT_INTERP
    program = struct.pack('<IIQ', p_type, 4, data_offset).ljust(phentsize,
                                                                b'\0')
    data = b'' if interpreter is None else interpreter.encode() + b'\0'
    return bytes(header) + program + data


def write_file(path, content, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(content)
    os.chmod(path, mode)


class FakeHost(fixtures.Fixture):
    """A host with what the recipes need for their digests and builds."""

    def _setUp(self):
        real_guest_src = self._real_guest_source_dir()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.boot = os.path.join(self.root, 'boot')
        self.modules_root = os.path.join(self.root, 'lib', 'modules')
        self.tools = os.path.join(self.root, 'tools')
        self.guest_src = os.path.join(self.root, 'guest')
        self.libc = os.path.join(self.root, 'libc.a')
        self.grub_pc_dir = os.path.join(self.root, 'grub', 'i386-pc')
        os.makedirs(self.boot)
        os.makedirs(self.tools)
        shutil.copytree(real_guest_src, self.guest_src)
        self.add_kernel(KERNEL_VERSION)
        self.add_tool('busybox', elf64())
        self.binaries = []
        for binary, package in tiny.DYNAMIC_BINARIES:
            path = self.add_tool(os.path.basename(binary),
                                 elf64('/lib64/ld-linux-x86-64.so.2'))
            self.binaries.append((path, package))
        for tool in ('gcc', 'ldd', 'mkfs.ext4', 'qemu-img', 'debootstrap',
                     'grub-install', 'mount', 'umount'):
            self.add_tool(tool, b'#!/bin/sh\nexit 0\n')
        write_file(self.libc, b'!<arch>\n')
        write_file(os.path.join(self.grub_pc_dir, 'boot.img'), bytes(512))

        self.useFixture(fixtures.EnvironmentVariable(base.GUEST_SRC_ENV,
                                                     self.guest_src))
        patches = {
            'nova_substrate.guests.base.BOOT_DIR': self.boot,
            'nova_substrate.guests.base.MODULES_ROOT': self.modules_root,
            'nova_substrate.guests.base._TOOL_PATH': self.tools,
            'nova_substrate.guests.base._LIBC_STATIC': (self.libc,),
            'nova_substrate.guests.base.dpkg_version': self.dpkg_version,
            'nova_substrate.guests.base.shared_libraries': lambda b: [],
            'nova_substrate.guests.tiny.DYNAMIC_BINARIES':
                tuple(self.binaries),
            'nova_substrate.guests.cloud.GRUB_PC_DIR': self.grub_pc_dir,
        }
        for name, value in patches.items():
            self.useFixture(fixtures.MonkeyPatch(name, value))

    def _real_guest_source_dir(self):
        self.useFixture(fixtures.EnvironmentVariable(base.GUEST_SRC_ENV))
        return base.guest_source_dir()

    @staticmethod
    def dpkg_version(package):
        return '1.0-%s' % package

    def add_kernel(self, version, initrd=True, modules=True):
        """A cloud kernel in boot/; its modules are all built in."""
        write_file(os.path.join(self.boot, 'vmlinuz-' + version),
                   b'kernel ' + version.encode())
        if initrd:
            write_file(os.path.join(self.boot, 'initrd.img-' + version),
                       b'initrd ' + version.encode())
        if modules:
            modules_dir = os.path.join(self.modules_root, version)
            write_file(os.path.join(modules_dir, 'modules.dep'), b'')
            builtin = ''.join('kernel/drivers/virtio/%s.ko\n' % name
                              for name in tiny.KERNEL_MODULES)
            write_file(os.path.join(modules_dir, 'modules.builtin'),
                       builtin.encode())

    def add_tool(self, name, content, mode=0o755):
        path = os.path.join(self.tools, name)
        write_file(path, content, mode)
        return path

    def remove_tool(self, name):
        os.unlink(os.path.join(self.tools, name))

    def guest_file(self, name):
        return os.path.join(self.guest_src, name)


class FakeRecipe(base.Recipe):
    """A guest whose build writes small files and records each call.

    version feeds the digest; on_build, if given, runs in the middle of
    the build, with the first files written.
    """

    name = 'fake'
    cmdline = 'console=ttyS0 fake'

    def __init__(self, version=b'1', on_build=None):
        self.version = version
        self.on_build = on_build
        self.builds = 0

    def digest_inputs(self):
        yield 'recipe', self.name.encode()
        yield 'version', self.version

    def build(self, out_dir, scratch_dir, progress):
        self.builds += 1
        progress('fake guest: writing')
        write_file(os.path.join(scratch_dir, 'scratch'), b'scratch')
        write_file(os.path.join(out_dir, 'vmlinuz'), b'kernel',
                   stat.S_IRUSR)
        if self.on_build is not None:
            self.on_build()
        write_file(os.path.join(out_dir, 'initrd.img'), b'initrd', 0o600)
        write_file(os.path.join(out_dir, 'disk.qcow2'),
                   b'disk ' + self.version, 0o600)


class FakeDiskRecipe(FakeRecipe):
    """A guest that boots from its disk: its build writes the disk only."""

    name = 'fakedisk'
    cmdline = None

    def build(self, out_dir, scratch_dir, progress):
        self.builds += 1
        write_file(os.path.join(out_dir, 'disk.qcow2'),
                   b'bootable disk ' + self.version, 0o600)


def fake_qcow2_virtual_size(guest, path):
    return DISK_BYTES
