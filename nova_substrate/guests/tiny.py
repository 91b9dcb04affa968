"""The tiny test guest: the host's cloud kernel and a busybox initrd.

It boots in a couple of seconds under TCG and carries just what
nova-substrate talks to: the virtio drivers, the QEMU guest agent, the
activation hook with its helper, and ssh-keygen for the hook's host keys.
Its disk is a small ext4 filesystem with a marker file, mounted at /mnt.
"""

import lzma
import os
import sys

from nova_substrate.guests import base
from nova_substrate.guests import cpio

NAME = 'tiny'
CMDLINE = 'console=ttyS0 quiet rdinit=/init'
DISK_BYTES = 64 * 1024 * 1024
DISK_MARKER = 'nova-substrate-tiny'
DISK_LABEL = 'tiny'

# Loaded in dependency order, resolved through modules.dep.
KERNEL_MODULES = ('virtio', 'virtio_ring', 'virtio_pci_modern_dev',
                  'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_blk',
                  'virtio_net', 'net_failover', 'failover',
                  'virtio_balloon', 'virtio_console')
# Older kernels build these into virtio_pci.
OPTIONAL_MODULES = frozenset(['virtio_pci_modern_dev',
                              'virtio_pci_legacy_dev'])
MODULE_LIST = 'etc/nova-substrate/modules'

# (binary, Debian package); copied with the libraries ldd lists.
DYNAMIC_BINARIES = (('/usr/sbin/qemu-ga', 'qemu-guest-agent'),
                    ('/usr/bin/ssh-keygen', 'openssh-client'))
BUSYBOX = ('busybox', 'busybox-static')

INIT = r'''#!/bin/sh
# /init of the nova-substrate tiny test guest. It stays PID 1: the sleep
# loop at the end keeps the shell in wait(), which also reaps the
# background jobs the activation hook leaves behind.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp

while read -r module; do
    insmod "$module"
done < /etc/nova-substrate/modules

ip link set dev lo up
read -r name < /etc/hostname
hostname "$name"

# The agent's port shows up once the host has answered the virtio
# console's port discovery, a moment after the driver loads.
agent_port() {
    for name_file in /sys/class/virtio-ports/*/name; do
        [ -f "$name_file" ] || continue
        read -r port_name < "$name_file"
        [ "$port_name" = org.qemu.guest_agent.0 ] || continue
        port_dir=${name_file%/name}
        AGENT_PORT=/dev/${port_dir##*/}
        [ -c "$AGENT_PORT" ] && return 0
    done
    return 1
}

tries=0
while ! agent_port && [ "$tries" -lt 500 ]; do
    tries=$((tries + 1))
    sleep 0.01
done
if [ -n "$AGENT_PORT" ]; then
    qemu-ga -d -m virtio-serial -p "$AGENT_PORT" -f /run/qemu-ga.pid \
        -t /run -l /run/qemu-ga.log
else
    echo "nova-substrate-guest: no guest agent port" > /dev/ttyS0
fi

if [ -b /dev/vda ]; then
    mount -t ext4 /dev/vda /mnt
fi

mkdir -p /run/nova-substrate
: > /run/nova-substrate/booted
echo "nova-substrate-guest: ready" > /dev/ttyS0

while :; do
    sleep 3600
done
'''

PASSWD = 'root:x:0:0:root:/root:/bin/sh\n'
GROUP = 'root:x:0:\n'
HOSTS = '127.0.0.1\tlocalhost\n127.0.1.1\ttiny\n'


class TinyRecipe(base.Recipe):

    name = NAME
    cmdline = CMDLINE

    def check_prerequisites(self):
        self._kernel()
        self._busybox()
        for binary, package in DYNAMIC_BINARIES:
            if not os.access(binary, os.X_OK):
                raise base.MissingPrerequisite(NAME, binary, package)

    def check_build_prerequisites(self):
        base.check_compiler(NAME)
        base.check_image_tools(NAME)
        base.find_tool(NAME, 'ldd', 'libc-bin')

    def _kernel(self):
        return base.find_host_kernel(NAME)

    def _busybox(self):
        path = base.find_tool(NAME, *BUSYBOX)
        if base.elf_interpreter(path) is not None:
            raise base.MissingPrerequisite(
                NAME, 'a statically linked busybox (%s is dynamic)' % path,
                BUSYBOX[1])
        return path

    def digest_inputs(self):
        kernel = self._kernel()
        yield 'recipe', NAME.encode()
        for module in (base, cpio, sys.modules[__name__]):
            yield 'source:' + module.__name__, base.source_file(module)
        yield 'hook', base.hook_path()
        yield 'guestutil.c', base.guestutil_source_path()
        yield 'libc6-dev', base.dpkg_version('libc6-dev').encode()
        yield 'kernel-version', kernel.version.encode()
        yield 'vmlinuz', kernel.vmlinuz
        for path in _module_files(kernel):
            yield 'module:' + os.path.basename(path), path
        yield 'busybox', self._busybox()
        for binary, _package in DYNAMIC_BINARIES:
            yield 'binary:' + binary, binary
            for library in base.shared_libraries(binary):
                yield 'library:' + library, os.path.realpath(library)

    def build(self, out_dir, scratch_dir, progress):
        kernel = self._kernel()
        progress('tiny guest: initrd')
        archive = cpio.Archive()
        _add_skeleton(archive)
        _add_busybox(archive, self._busybox())
        _add_dynamic_binaries(archive)
        _add_modules(archive, kernel)
        _add_substrate_tools(archive, scratch_dir)
        archive.write_gzip(os.path.join(out_dir, 'initrd.img'))
        base.copy_file(kernel.vmlinuz, os.path.join(out_dir, 'vmlinuz'))
        progress('tiny guest: disk')
        _make_disk(out_dir, scratch_dir)


def _add_skeleton(archive):
    for path in ('proc', 'sys', 'dev', 'run', 'mnt', 'root', 'etc/ssh',
                 'var/lib', 'usr/bin', 'usr/sbin', 'bin', 'sbin'):
        archive.add_dir(path)
    archive.add_dir('tmp', 0o1777)
    archive.add_symlink('var/run', '/run')
    # The kernel opens the console before /init mounts devtmpfs.
    archive.add_char_device('dev/console', 5, 1)
    archive.add_char_device('dev/null', 1, 3, 0o666)
    archive.add_bytes('init', INIT.encode(), 0o755)
    archive.add_bytes('etc/passwd', PASSWD.encode())
    archive.add_bytes('etc/group', GROUP.encode())
    archive.add_bytes('etc/hostname', b'tiny\n')
    archive.add_bytes('etc/hosts', HOSTS.encode())
    archive.add_bytes('etc/machine-id', b'')


def _add_busybox(archive, busybox):
    archive.add_file('bin/busybox', busybox, 0o755)
    for applet in base.run([busybox, '--list-full']).split():
        if applet not in archive:
            archive.add_symlink(applet, '/bin/busybox')


def _add_dynamic_binaries(archive):
    for binary, _package in DYNAMIC_BINARIES:
        archive.add_file(binary, binary, 0o755)
        for library in base.shared_libraries(binary):
            if library not in archive:
                archive.add_file(library, os.path.realpath(library), 0o755)


def _add_substrate_tools(archive, scratch_dir):
    archive.add_file(base.GUEST_HOOK_PATH, base.hook_path(), 0o755)
    guestutil = os.path.join(scratch_dir, 'nova-substrate-guestutil')
    base.compile_guestutil(guestutil)
    archive.add_file(base.GUEST_GUESTUTIL_PATH, guestutil, 0o755)


def _module_name(path):
    name = os.path.basename(path).split('.ko', 1)[0]
    return name.replace('-', '_')


def _read_modules_dep(kernel):
    """{module name: (relative path, [dependency names])}."""
    modules = {}
    with open(os.path.join(kernel.modules_dir, 'modules.dep')) as f:
        for line in f:
            path, _sep, deps = line.partition(':')
            modules[_module_name(path)] = (
                path.strip(), [_module_name(dep) for dep in deps.split()])
    return modules


def _read_builtin(kernel):
    try:
        with open(os.path.join(kernel.modules_dir, 'modules.builtin')) as f:
            return {_module_name(line.strip()) for line in f}
    except FileNotFoundError:
        return set()


def _module_load_order(kernel):
    """Relative paths of the wanted modules, each after its dependencies."""
    available = _read_modules_dep(kernel)
    builtin = _read_builtin(kernel)
    order = []
    seen = set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dependency in available[name][1]:
            visit(dependency)
        order.append(available[name][0])

    for name in KERNEL_MODULES:
        if name in available:
            visit(name)
        elif name not in builtin and name not in OPTIONAL_MODULES:
            raise base.GuestBuildError('kernel %s has no module %s'
                                       % (kernel.version, name))
    return order


def _module_files(kernel):
    return [os.path.join(kernel.modules_dir, path)
            for path in _module_load_order(kernel)]


def _read_module(path):
    """The module's bytes; busybox insmod wants them uncompressed."""
    if path.endswith('.ko.xz'):
        with lzma.open(path) as f:
            return f.read()
    if path.endswith('.ko'):
        with open(path, 'rb') as f:
            return f.read()
    raise base.GuestBuildError('cannot unpack kernel module %s' % path)


def _add_modules(archive, kernel):
    guest_paths = []
    for relative in _module_load_order(kernel):
        source = os.path.join(kernel.modules_dir, relative)
        guest_path = '/lib/modules/%s/%s.ko' % (
            kernel.version, relative.split('.ko', 1)[0])
        archive.add_bytes(guest_path, _read_module(source))
        guest_paths.append(guest_path)
    archive.add_bytes(MODULE_LIST, ''.join(p + '\n' for p in guest_paths)
                      .encode())


def _make_disk(out_dir, scratch_dir):
    content = os.path.join(scratch_dir, 'disk')
    os.makedirs(content)
    with open(os.path.join(content, DISK_MARKER), 'w') as f:
        f.write('nova-substrate tiny test guest disk\n')
    base.make_ext4_qcow2(NAME, content, os.path.join(out_dir, 'disk.qcow2'),
                         DISK_BYTES, DISK_LABEL)
