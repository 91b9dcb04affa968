"""SubstrateDriver and FakeSubstrateDriver refuse unusable options at start."""

import nova_substrate.testing  # noqa: F401  (Nova's threading choice)

from oslo_config import fixture as config_fixture
import testtools

from nova_substrate import conf as substrate_conf
from nova_substrate.virt import driver
from nova_substrate.virt import fake


class DriverOptionsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(substrate_conf.CONF))

    def assertRefused(self, driver_class, option, **overrides):
        self.conf.config(group='substrate', **overrides)
        e = self.assertRaises(substrate_conf.InvalidOption, driver_class,
                              virtapi=None)
        self.assertEqual('[substrate] %s' % option, e.option)

    def test_real_driver_names_a_malformed_pool(self):
        self.assertRefused(driver.SubstrateDriver, 'pools',
                           pools=['no-count'])

    def test_real_driver_names_a_relative_pool_path(self):
        self.assertRefused(driver.SubstrateDriver, 'pool_path',
                           pool_path='relative')

    def test_fake_driver_names_a_malformed_pool(self):
        self.assertRefused(fake.FakeSubstrateDriver, 'pools',
                           pools=['img:flavor:0'])
