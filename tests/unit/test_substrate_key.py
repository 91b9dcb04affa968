"""Substrate keys: equal for clones, different for anything that shapes."""

from nova import objects
import testtools

from nova_substrate import substrate_key

objects.register_all()

IMAGE_ID = 'c9d1e6c3-7a43-4b8e-9a3e-1d2f3a4b5c6d'
OTHER_IMAGE_ID = '0f6b2a54-3c8e-4d1a-9b7e-6a5c4d3e2f10'


def image(image_id=IMAGE_ID, **properties):
    props = {'hw_qemu_guest_agent': 'yes'}
    props.update(properties)
    return objects.ImageMeta.from_dict({'id': image_id,
                                        'properties': props})


def flavor(extra_specs=None, **fields):
    values = dict(memory_mb=512, vcpus=2, root_gb=1, ephemeral_gb=0, swap=0,
                  name='m1.substrate', flavorid='42')
    values.update(fields)
    specs = {'substrate:enabled': 'true', 'hw:cpu_policy': 'shared'}
    if extra_specs is not None:
        specs = extra_specs
    return objects.Flavor(extra_specs=specs, **values)


class SubstrateKeyTest(testtools.TestCase):

    def key(self, image_meta=None, flavor_=None):
        return substrate_key.substrate_key(image_meta or image(),
                                           flavor_ or flavor())

    def test_stable_for_equal_inputs(self):
        self.assertEqual(self.key(), self.key())
        self.assertEqual(32, len(self.key()))
        self.assertRegex(self.key(), '^[0-9a-f]+$')

    def test_name_and_flavor_id_do_not_count(self):
        # Flavors of the same shape give the same domain whatever their
        # names, so their instances can share substrates.
        self.assertEqual(self.key(),
                         self.key(flavor_=flavor(name='other',
                                                 flavorid='43')))

    def test_changes_with_image_id(self):
        self.assertNotEqual(self.key(),
                            self.key(image_meta=image(OTHER_IMAGE_ID)))

    def test_changes_with_image_property(self):
        self.assertNotEqual(
            self.key(), self.key(image_meta=image(hw_qemu_guest_agent='no')))
        self.assertNotEqual(
            self.key(), self.key(image_meta=image(hw_disk_bus='scsi')))

    def test_changes_with_flavor_size(self):
        base = self.key()
        for fields in ({'memory_mb': 1024}, {'vcpus': 1}, {'root_gb': 2},
                       {'ephemeral_gb': 1}, {'swap': 256}):
            self.assertNotEqual(base, self.key(flavor_=flavor(**fields)),
                                fields)

    def test_changes_with_extra_specs(self):
        base = self.key()
        self.assertNotEqual(base, self.key(flavor_=flavor(
            {'substrate:enabled': 'true', 'hw:cpu_policy': 'dedicated'})))
        self.assertNotEqual(base, self.key(flavor_=flavor(
            {'substrate:enabled': 'true', 'hw:cpu_policy': 'shared',
             'hw:mem_page_size': 'large'})))

    def test_ignores_substrate_extra_specs(self):
        base = self.key()
        for specs in ({'hw:cpu_policy': 'shared'},
                      {'substrate:enabled': 'false',
                       'hw:cpu_policy': 'shared'},
                      {'substrate:enabled': 'true',
                       'substrate:fallback': 'false',
                       'hw:cpu_policy': 'shared'}):
            self.assertEqual(base, self.key(flavor_=flavor(specs)), specs)

    def test_extra_spec_order_does_not_count(self):
        a = flavor({'a': '1', 'b': '2'})
        b = flavor({'b': '2', 'a': '1'})
        self.assertEqual(self.key(flavor_=a), self.key(flavor_=b))

    def test_document_names_what_is_hashed(self):
        doc = substrate_key.key_document(image(), flavor())
        self.assertEqual(IMAGE_ID, doc['image']['id'])
        self.assertIs(True,
                      doc['image']['properties']['hw_qemu_guest_agent'])
        self.assertEqual({'hw:cpu_policy': 'shared'},
                         doc['flavor']['extra_specs'])
        self.assertEqual(512, doc['flavor']['memory_mb'])


class FlavorSpecsTest(testtools.TestCase):

    def test_defaults(self):
        plain = flavor({})
        self.assertFalse(substrate_key.wants_substrate(plain))
        self.assertTrue(substrate_key.fallback_allowed(plain))

    def test_parsing(self):
        for value, expected in (('true', True), ('True', True),
                                ('1', True), ('yes', True), ('on', True),
                                ('false', False), ('0', False),
                                ('no', False), ('off', False)):
            specs = {'substrate:enabled': value, 'substrate:fallback': value}
            self.assertIs(expected,
                          substrate_key.wants_substrate(flavor(specs)), value)
            self.assertIs(expected,
                          substrate_key.fallback_allowed(flavor(specs)),
                          value)

    def test_invalid_boolean(self):
        self.assertRaises(ValueError, substrate_key.wants_substrate,
                          flavor({'substrate:enabled': 'maybe'}))
        self.assertRaises(ValueError, substrate_key.fallback_allowed,
                          flavor({'substrate:fallback': 'sometimes'}))
