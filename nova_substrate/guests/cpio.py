"""A writer for the cpio "newc" format the kernel unpacks as initramfs.

Writing the archive directly, rather than through cpio(1) from a staging
tree, sets owner, mode and device nodes without root or fakeroot and
gives the same bytes for the same input.
"""

import gzip
import stat

_MAGIC = b'070701'
_TRAILER = 'TRAILER!!!'


class Archive(object):
    """Entries keyed by path; parent directories are added implicitly."""

    def __init__(self):
        self._entries = {}

    def add_dir(self, path, mode=0o755):
        path = _normalize(path)
        self._add_parents(path)
        self._entries.setdefault(path, (stat.S_IFDIR | mode, b'', 0, 0))

    def add_bytes(self, path, data, mode=0o644):
        path = _normalize(path)
        self._add_parents(path)
        self._entries[path] = (stat.S_IFREG | mode, data, 0, 0)

    def add_file(self, path, source, mode=0o644):
        with open(source, 'rb') as f:
            self.add_bytes(path, f.read(), mode)

    def add_symlink(self, path, target):
        path = _normalize(path)
        self._add_parents(path)
        self._entries[path] = (stat.S_IFLNK | 0o777, target.encode(), 0, 0)

    def add_char_device(self, path, major, minor, mode=0o600):
        path = _normalize(path)
        self._add_parents(path)
        self._entries[path] = (stat.S_IFCHR | mode, b'', major, minor)

    def __contains__(self, path):
        return _normalize(path) in self._entries

    def _add_parents(self, path):
        parent = path.rpartition('/')[0]
        if parent and parent not in self._entries:
            self.add_dir(parent)

    def to_bytes(self):
        """The archive, parents before children, ending in the trailer."""
        chunks = []
        for inode, path in enumerate(sorted(self._entries), start=1):
            mode, data, rmajor, rminor = self._entries[path]
            chunks.append(_entry(inode, path, mode, data, rmajor, rminor))
        chunks.append(_entry(0, _TRAILER, 0, b'', 0, 0))
        return b''.join(chunks)

    def write_gzip(self, dest):
        with open(dest, 'wb') as raw:
            with gzip.GzipFile(fileobj=raw, mode='wb', mtime=0,
                               compresslevel=6) as gz:
                gz.write(self.to_bytes())


def _normalize(path):
    return path.strip('/')


def _pad4(length):
    return b'\0' * (-length % 4)


def _entry(inode, path, mode, data, rmajor, rminor):
    name = path.encode() + b'\0'
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (inode, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor,
              len(name), 0)
    header = _MAGIC + b''.join(b'%08X' % field for field in fields)
    return (header + name + _pad4(len(header) + len(name)) +
            data + _pad4(len(data)))
