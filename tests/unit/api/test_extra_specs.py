"""The substrate: extra spec validators, as Nova's API loads and runs them.

They reach Nova through the package's nova.api.extra_spec_validators entry
point, so these tests need the package installed (pip install -e).
"""

from nova.api.validation.extra_specs import validators
from nova import exception
import testtools

from nova_substrate.api import extra_specs

BOOL_SPECS = ('substrate:enabled', 'substrate:fallback')


class ExtraSpecValidatorsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        validators.load_validators()

    def test_names(self):
        self.assertEqual(list(BOOL_SPECS),
                         [v.name for v in extra_specs.register()])
        for v in extra_specs.register():
            self.assertIs(bool, v.value['type'])
            self.assertTrue(v.description)
            self.assertFalse(v.deprecated)

    def test_loaded_by_nova(self):
        for name in BOOL_SPECS:
            self.assertIn(name, validators.VALIDATORS)
        self.assertIn('substrate', validators.NAMESPACES)

    def test_boolean_values(self):
        for name in BOOL_SPECS:
            for value in ('true', 'false', 'True', 'FALSE', '1', '0', 'yes',
                          'no', 'on', 'off'):
                validators.validate(name, value)

    def test_other_values_refused(self):
        for name in BOOL_SPECS:
            for value in ('maybe', '', '2', 'enabled'):
                e = self.assertRaises(exception.ValidationError,
                                      validators.validate, name, value)
                self.assertIn(repr(value), str(e))

    def test_unknown_substrate_key_refused(self):
        e = self.assertRaises(exception.ValidationError,
                              validators.validate, 'substrate:bogus', 'true')
        self.assertIn('substrate:bogus', str(e))

    def test_other_namespaces_untouched(self):
        validators.validate('hw:cpu_policy', 'shared')
        validators.validate('custom:anything', 'maybe')
