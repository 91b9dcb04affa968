"""The libvirt save-image format, as read and rewritten by the engine."""

import hashlib
import os
import struct

import fixtures
import testtools

from nova_substrate.engine import exception
from nova_substrate.engine import saveimage
from tests.unit.engine import fakes


class SaveImageTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'memory.save')
        self.stream = fakes.make_save_image(self.path)

    def test_header_fields_and_xml(self):
        header = saveimage.read_header(self.path)
        self.assertEqual(2, header.version)
        self.assertEqual(65536, header.data_len)
        self.assertEqual(1, header.was_running)
        self.assertEqual(fakes.DOMAIN_XML, header.domain_xml)
        self.assertEqual(fakes.COOKIE_XML, header.cookie_xml)
        self.assertEqual(saveimage.HEADER_SIZE + 65536, header.stream_offset)

    def test_layout_matches_libvirt(self):
        # magic, 19 little-endian u32, the cookie right after the XML's NUL
        with open(self.path, 'rb') as f:
            raw = f.read(saveimage.HEADER_SIZE)
        self.assertEqual(b'LibvirtQemudSave', raw[:16])
        fields = struct.unpack('<19I', raw[16:])
        self.assertEqual((2, 65536, 1, 0, len(fakes.DOMAIN_XML) + 1),
                         fields[:5])
        self.assertEqual((0,) * 14, fields[5:])

    def test_rewrite_keeps_stream_and_offset(self):
        xml = fakes.DOMAIN_XML.replace('template', 'clone-1')
        saveimage.rewrite_header(self.path, xml, was_running=False)
        header = saveimage.read_header(self.path)
        self.assertEqual(xml, header.domain_xml)
        self.assertEqual(fakes.COOKIE_XML, header.cookie_xml)
        self.assertEqual(0, header.was_running)
        with open(self.path, 'rb') as f:
            f.seek(header.stream_offset)
            self.assertEqual(self.stream, f.read())

    def test_rewrite_refuses_xml_larger_than_the_room(self):
        huge = fakes.DOMAIN_XML + '<!--%s-->' % ('x' * 70000)
        self.assertRaises(exception.SaveImageError,
                          saveimage.rewrite_header, self.path, huge)
        # nothing was written
        self.assertEqual(fakes.DOMAIN_XML,
                         saveimage.read_header(self.path).domain_xml)

    def test_digest_covers_the_stream_only(self):
        header = saveimage.read_header(self.path)
        digest, size = saveimage.stream_digest(self.path,
                                               header.stream_offset)
        self.assertEqual(hashlib.sha256(self.stream).hexdigest(), digest)
        self.assertEqual(len(self.stream), size)
        saveimage.rewrite_header(self.path, fakes.DOMAIN_XML.replace(
            'template', 'other'))
        self.assertEqual(digest, saveimage.stream_digest(
            self.path, header.stream_offset)[0])

    def test_check_accepts_intact_image(self):
        header = saveimage.check(self.path, len(self.stream))
        self.assertEqual(fakes.DOMAIN_XML, header.domain_xml)

    def test_check_detects_truncation(self):
        os.truncate(self.path, os.path.getsize(self.path) - 4096)
        e = self.assertRaises(exception.SaveImageError, saveimage.check,
                              self.path, len(self.stream))
        self.assertIn('truncated', str(e))

    def _corrupt(self, offset, data):
        with open(self.path, 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def assertRejected(self, reason):
        e = self.assertRaises(exception.SaveImageError,
                              saveimage.read_header, self.path)
        self.assertIn(reason, str(e))

    def test_bad_magic(self):
        self._corrupt(0, b'NotASaveImage!!!')
        self.assertRejected('not a libvirt save image')

    def test_partial_save(self):
        self._corrupt(0, saveimage.PARTIAL_MAGIC)
        self.assertRejected('incomplete save')

    def test_wrong_version(self):
        self._corrupt(16, struct.pack('<I', 7))
        self.assertRejected('version 7')

    def test_compressed(self):
        self._corrupt(28, struct.pack('<I', 1))
        self.assertRejected('compressed')

    def test_data_len_past_end(self):
        self._corrupt(20, struct.pack('<I', 15 << 20))
        self.assertRejected('truncated XML region')

    def test_cookie_offset_out_of_region(self):
        self._corrupt(32, struct.pack('<I', 70000))
        self.assertRejected('cookie offset')

    def test_missing_stream_magic(self):
        self._corrupt(saveimage.HEADER_SIZE + 65536, b'XXXX')
        self.assertRejected('no QEMU migration stream')

    def test_unterminated_xml(self):
        self._corrupt(saveimage.HEADER_SIZE, b'<' * 65536)
        self.assertRejected('not terminated')

    def test_short_file(self):
        with open(self.path, 'wb') as f:
            f.write(b'LibvirtQemud')
        self.assertRejected('truncated header')
