"""The libvirt QEMU save-image format: read it, check it, re-identify it.

A save image (libvirt 9, src/qemu/qemu_saveimage.h) is:

    16 bytes  magic "LibvirtQemudSave"
    19 x u32  version (2), data_len, was_running, compressed, cookieOffset,
              14 unused, little-endian on x86
    data_len  domain XML, NUL, cookie XML at cookieOffset, NUL, zero padding
    ...       the QEMU migration stream ("QEVM", version 3)

A clone gets a new identity by writing a new header and XML in front of
the same stream. libvirt performs no ABI check on a save image's own XML;
QEMU still checks that the devices match the stream. The XML must fit the
room libvirt left (data_len), which is what keeps the stream offset, and
therefore the bytes after it, unchanged.
"""

import hashlib
import os
import struct

from nova_substrate.engine import exception

MAGIC = b'LibvirtQemudSave'
PARTIAL_MAGIC = b'LibvirtQemudPart'
VERSION = 2
_FIELDS = struct.Struct('<19I')
HEADER_SIZE = len(MAGIC) + _FIELDS.size
STREAM_MAGIC = b'QEVM'
STREAM_VERSION = 3
# Memory states are read in large chunks: hashing is then limited by the
# digest, not by system calls.
_CHUNK = 4 << 20


class SaveImageHeader(object):
    """The fixed header and the XML region of a save image."""

    def __init__(self, version, data_len, was_running, compressed,
                 domain_xml, cookie_xml):
        self.version = version
        self.data_len = data_len
        self.was_running = was_running
        self.compressed = compressed
        self.domain_xml = domain_xml
        self.cookie_xml = cookie_xml

    @property
    def stream_offset(self):
        return HEADER_SIZE + self.data_len

    def pack(self):
        """Header and XML region, exactly data_len bytes of region."""
        xml = self.domain_xml.encode('utf-8') + b'\0'
        cookie_offset = 0
        region = xml
        if self.cookie_xml is not None:
            cookie_offset = len(xml)
            region += self.cookie_xml.encode('utf-8') + b'\0'
        if len(region) > self.data_len:
            raise exception.SaveImageError(
                'new domain XML needs %d bytes, the save image has room for '
                '%d' % (len(region), self.data_len))
        region += b'\0' * (self.data_len - len(region))
        fields = [self.version, self.data_len, self.was_running,
                  self.compressed, cookie_offset] + [0] * 14
        return MAGIC + _FIELDS.pack(*fields) + region


def read_header(path):
    """Parse the header and XML region of the save image at path.

    Raises SaveImageError for anything libvirt would misread: a partial
    save, a wrong version, a compressed image, an XML region that runs
    past the end of the file, or a missing migration stream.
    """
    with open(path, 'rb') as f:
        return _read_header(f, path)


def _read_header(f, path):
    head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise exception.SaveImageError('%s: truncated header' % path)
    magic = head[:len(MAGIC)]
    if magic == PARTIAL_MAGIC:
        raise exception.SaveImageError('%s: incomplete save (libvirt never '
                                       'finished writing it)' % path)
    if magic != MAGIC:
        raise exception.SaveImageError('%s: not a libvirt save image' % path)
    fields = _FIELDS.unpack(head[len(MAGIC):])
    version, data_len, was_running, compressed, cookie_offset = fields[:5]
    if version != VERSION:
        raise exception.SaveImageError('%s: save image version %d, expected '
                                       '%d' % (path, version, VERSION))
    if compressed:
        raise exception.SaveImageError('%s: compressed save images cannot be '
                                       'cloned' % path)
    if not 0 < data_len <= 16 << 20:
        raise exception.SaveImageError('%s: implausible XML region of %d '
                                       'bytes' % (path, data_len))
    region = f.read(data_len)
    if len(region) < data_len:
        raise exception.SaveImageError('%s: truncated XML region' % path)
    xml_end = region.find(b'\0')
    if xml_end <= 0:
        raise exception.SaveImageError('%s: domain XML is not terminated'
                                       % path)
    cookie = None
    if cookie_offset:
        if not xml_end < cookie_offset < data_len:
            raise exception.SaveImageError(
                '%s: cookie offset %d outside the XML region'
                % (path, cookie_offset))
        cookie_end = region.find(b'\0', cookie_offset)
        if cookie_end < 0:
            raise exception.SaveImageError('%s: cookie is not terminated'
                                           % path)
        cookie = _decode(region[cookie_offset:cookie_end], path)
    stream = f.read(len(STREAM_MAGIC) + 4)
    if (len(stream) < 8 or stream[:4] != STREAM_MAGIC or
            struct.unpack('>I', stream[4:])[0] != STREAM_VERSION):
        raise exception.SaveImageError('%s: no QEMU migration stream after '
                                       'the XML region' % path)
    return SaveImageHeader(version, data_len, was_running, compressed,
                           _decode(region[:xml_end], path), cookie)


def _decode(raw, path):
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        raise exception.SaveImageError('%s: XML is not UTF-8' % path)


def stream_digest(path, offset):
    """sha256 of the migration stream (everything from offset on)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, 'rb', buffering=0) as f:
        f.seek(offset)
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def check(path, stream_bytes):
    """Structural check before libvirt sees the file.

    Cheap (a few KiB read and one stat): catches truncation and a damaged
    header. The stream's content is checked by stream_digest().
    """
    header = read_header(path)
    actual = os.stat(path).st_size - header.stream_offset
    if actual != stream_bytes:
        raise exception.SaveImageError(
            '%s: migration stream is %d bytes, expected %d (truncated or '
            'damaged)' % (path, actual, stream_bytes))
    return header


def rewrite_header(path, domain_xml, was_running=None):
    """Replace the domain XML of the save image at path, in place.

    Only the header and XML region are written; the stream is untouched.
    """
    with open(path, 'r+b') as f:
        header = _read_header(f, path)
        header.domain_xml = domain_xml
        if was_running is not None:
            header.was_running = int(bool(was_running))
        packed = header.pack()
        f.seek(0)
        f.write(packed)
        f.flush()
    return header
