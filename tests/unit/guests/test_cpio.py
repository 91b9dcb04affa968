"""The cpio newc writer that makes the tiny guest's initramfs."""

import collections
import gzip
import os
import shutil
import stat
import subprocess

import fixtures
import testtools

from nova_substrate.guests import cpio

Entry = collections.namedtuple('Entry', 'ino mode uid gid nlink mtime '
                                        'rdevmajor rdevminor name data')
HEADER_BYTES = 110


def read_newc(archive):
    """The entries of a newc archive, the trailer included, in order.

    Written from the format's description (the kernel's
    Documentation/driver-api/early-userspace/buffer-format.rst), not from
    the writer: 13 fields of 8 hex digits after the magic, the name and
    the data each padded to a multiple of 4 bytes.
    """
    entries = []
    offset = 0
    while True:
        if offset % 4:
            raise AssertionError('entry at %d is not 4-byte aligned'
                                 % offset)
        header = archive[offset:offset + HEADER_BYTES]
        if header[:6] != b'070701':
            raise AssertionError('bad magic at %d: %r' % (offset,
                                                          header[:6]))
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        (ino, mode, uid, gid, nlink, mtime, filesize, _devmajor, _devminor,
         rdevmajor, rdevminor, namesize, check) = fields
        if check != 0:
            raise AssertionError('check field set at %d' % offset)
        offset += HEADER_BYTES
        name = archive[offset:offset + namesize]
        if not name.endswith(b'\0'):
            raise AssertionError('name %r not NUL-terminated' % name)
        offset += namesize
        offset += -offset % 4
        data = archive[offset:offset + filesize]
        offset += filesize
        offset += -offset % 4
        entries.append(Entry(ino, mode, uid, gid, nlink, mtime, rdevmajor,
                             rdevminor, name[:-1].decode(), data))
        if name == b'TRAILER!!!\0':
            if offset != len(archive):
                raise AssertionError('%d bytes after the trailer'
                                     % (len(archive) - offset))
            return entries


def sample_archive():
    archive = cpio.Archive()
    archive.add_dir('tmp', 0o1777)
    archive.add_bytes('/etc/hostname', b'tiny\n')
    archive.add_bytes('init', b'#!/bin/sh\nexec sh\n', 0o755)
    archive.add_symlink('bin/sh', '/bin/busybox')
    archive.add_char_device('dev/console', 5, 1)
    archive.add_char_device('dev/null', 1, 3, 0o666)
    archive.add_bytes('lib/modules/6.1.0/kernel/virtio.ko', b'\x7fELF' * 3 +
                      b'!')
    return archive


EXPECTED = {
    # name: (mode, data, (rdevmajor, rdevminor))
    'bin': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'bin/sh': (stat.S_IFLNK | 0o777, b'/bin/busybox', (0, 0)),
    'dev': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'dev/console': (stat.S_IFCHR | 0o600, b'', (5, 1)),
    'dev/null': (stat.S_IFCHR | 0o666, b'', (1, 3)),
    'etc': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'etc/hostname': (stat.S_IFREG | 0o644, b'tiny\n', (0, 0)),
    'init': (stat.S_IFREG | 0o755, b'#!/bin/sh\nexec sh\n', (0, 0)),
    'lib': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'lib/modules': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'lib/modules/6.1.0': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'lib/modules/6.1.0/kernel': (stat.S_IFDIR | 0o755, b'', (0, 0)),
    'lib/modules/6.1.0/kernel/virtio.ko': (stat.S_IFREG | 0o644,
                                           b'\x7fELF' * 3 + b'!', (0, 0)),
    'tmp': (stat.S_IFDIR | 0o1777, b'', (0, 0)),
}


class ArchiveTest(testtools.TestCase):

    def test_reads_back_with_every_entry_as_added(self):
        entries = read_newc(sample_archive().to_bytes())
        *files, trailer = entries
        self.assertEqual('TRAILER!!!', trailer.name)
        self.assertEqual(sorted(EXPECTED), [e.name for e in files])
        for entry in files:
            mode, data, rdev = EXPECTED[entry.name]
            self.assertEqual(
                (oct(mode), data, rdev),
                (oct(entry.mode), entry.data,
                 (entry.rdevmajor, entry.rdevminor)), entry.name)
            # root-owned whatever user builds it, and reproducible
            self.assertEqual((0, 0, 0), (entry.uid, entry.gid, entry.mtime),
                             entry.name)
            self.assertEqual(2 if stat.S_ISDIR(mode) else 1, entry.nlink)
        # every entry its own inode, so the kernel links none together
        inodes = [e.ino for e in files]
        self.assertEqual(len(inodes), len(set(inodes)))
        self.assertNotIn(0, inodes)

    def test_parents_come_before_their_children(self):
        names = [e.name for e in read_newc(sample_archive().to_bytes())]
        for index, name in enumerate(names[:-1]):
            parent = name.rpartition('/')[0]
            if parent:
                self.assertIn(parent, names[:index], name)

    def test_cpio_lists_the_names_and_modes(self):
        tool = shutil.which('cpio')
        if tool is None:
            self.skipTest('cpio(1) is not installed')
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'initrd.cpio')
        with open(path, 'wb') as f:
            f.write(sample_archive().to_bytes())
        with open(path, 'rb') as f:
            names = subprocess.run([tool, '-i', '-t', '--quiet'], stdin=f,
                                   capture_output=True, text=True,
                                   check=True).stdout.splitlines()
        self.assertEqual(sorted(EXPECTED), names)
        with open(path, 'rb') as f:
            listing = subprocess.run(
                [tool, '-i', '-t', '-v', '-n', '--quiet'], stdin=f,
                capture_output=True, text=True, check=True).stdout
        modes = {}
        for line in listing.splitlines():
            words = line.split()
            name = words[-3] if words[-2] == '->' else words[-1]
            modes[name] = words[0]
            self.assertEqual(['0', '0'], words[2:4], line)
        self.assertEqual({name: stat.filemode(mode)
                          for name, (mode, _d, _r) in EXPECTED.items()},
                         modes)
        self.assertIn('bin/sh -> /bin/busybox', listing)

    def test_same_entries_give_the_same_bytes(self):
        forward = sample_archive()
        backward = cpio.Archive()
        backward.add_bytes('lib/modules/6.1.0/kernel/virtio.ko',
                           b'\x7fELF' * 3 + b'!')
        backward.add_char_device('dev/null', 1, 3, 0o666)
        backward.add_char_device('dev/console', 5, 1)
        backward.add_symlink('/bin/sh', '/bin/busybox')
        backward.add_bytes('init', b'#!/bin/sh\nexec sh\n', 0o755)
        backward.add_bytes('etc/hostname', b'tiny\n')
        backward.add_dir('tmp/', 0o1777)
        self.assertEqual(forward.to_bytes(), backward.to_bytes())

    def test_gzip_file_is_reproducible(self):
        # gzip records the file's base name: the same in every build
        first = os.path.join(self.useFixture(fixtures.TempDir()).path,
                             'initrd.img')
        second = os.path.join(self.useFixture(fixtures.TempDir()).path,
                              'initrd.img')
        sample_archive().write_gzip(first)
        sample_archive().write_gzip(second)
        with open(first, 'rb') as f:
            first_bytes = f.read()
        with open(second, 'rb') as f:
            self.assertEqual(first_bytes, f.read())
        self.assertEqual(sample_archive().to_bytes(),
                         gzip.decompress(first_bytes))

    def test_later_file_replaces_earlier_and_paths_are_normalized(self):
        archive = cpio.Archive()
        archive.add_bytes('/etc/hostname', b'old\n')
        archive.add_bytes('etc/hostname/', b'new\n', 0o600)
        self.assertIn('etc/hostname', archive)
        self.assertIn('/etc/', archive)
        self.assertNotIn('etc/hosts', archive)
        entries = {e.name: e for e in read_newc(archive.to_bytes())}
        self.assertEqual(['TRAILER!!!', 'etc', 'etc/hostname'],
                         sorted(entries))
        self.assertEqual(b'new\n', entries['etc/hostname'].data)
        self.assertEqual(stat.S_IFREG | 0o600, entries['etc/hostname'].mode)

    def test_add_file_copies_content(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        source = os.path.join(tmp, 'busybox')
        with open(source, 'wb') as f:
            f.write(b'\0\1\2binary')
        archive = cpio.Archive()
        archive.add_file('bin/busybox', source, 0o755)
        entries = {e.name: e for e in read_newc(archive.to_bytes())}
        self.assertEqual(b'\0\1\2binary', entries['bin/busybox'].data)
        self.assertEqual(stat.S_IFREG | 0o755, entries['bin/busybox'].mode)
