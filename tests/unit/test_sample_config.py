"""etc/'s sample configuration matches the options in conf.py."""

import os

import fixtures
from oslo_config import cfg
from oslo_config import generator
import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, 'etc', 'nova-substrate',
                      'nova-substrate.conf.sample')


class SampleConfigTest(testtools.TestCase):

    def test_sample_is_current(self):
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'sample.conf')
        conf = cfg.ConfigOpts()
        generator.register_cli_opts(conf)
        conf(['--namespace', 'nova_substrate', '--wrap-width', '79',
              '--output-file', out])
        generator.generate(conf)
        with open(out) as fresh, open(SAMPLE) as committed:
            self.assertEqual(fresh.read(), committed.read(),
                             'run "tox -e genconfig" and commit the sample')
