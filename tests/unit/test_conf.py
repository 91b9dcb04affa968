"""Options: declared once, listed for the sample, refused when unusable."""

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_substrate import conf as substrate_conf


class ConfTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        substrate_conf.register_opts(self.conf)
        self.fixture = self.useFixture(config_fixture.Config(self.conf))
        self.conf([], default_config_files=[])

    def test_defaults_are_valid(self):
        substrate_conf.validate(self.conf)

    def test_list_opts_covers_every_option(self):
        listed = {(g.name, o.name) for g, opts in substrate_conf.list_opts()
                  for o in opts}
        self.assertIn(('substrate', 'pool_path'), listed)
        self.assertIn(('substrate', 'memory_budget_mb'), listed)
        self.assertIn(('substrate_bench', 'guest_cache_dir'), listed)
        self.assertIn(('substrate_cache', 'quota_mb'), listed)
        self.assertEqual(len(substrate_conf.substrate_opts) +
                         len(substrate_conf.cache_opts) +
                         len(substrate_conf.bench_opts), len(listed))

    def assertInvalid(self, option, group='substrate', **overrides):
        for name, value in overrides.items():
            self.fixture.config(**{name: value, 'group': group})
        e = self.assertRaises(substrate_conf.InvalidOption,
                              substrate_conf.validate, self.conf)
        self.assertEqual('[%s] %s' % (group, option), e.option)
        self.assertIn('[%s] %s' % (group, option), str(e))
        return e

    def test_cache_remote_url_without_image_id(self):
        e = self.assertInvalid('remote_url', group='substrate_cache',
                               remote_url='nbd://store:10809/images')
        self.assertIn('{image_id}', str(e))

    def test_cache_remote_url_unknown_scheme(self):
        e = self.assertInvalid('remote_url', group='substrate_cache',
                               remote_url='ftp://store/{image_id}')
        self.assertIn('nbd, nbd+unix, http, https', str(e))

    def test_cache_remote_urls_accepted(self):
        for url in ('nbd://store:10809/{image_id}',
                    'nbd+unix:///{image_id}?socket=/run/store.sock',
                    'https://store.example/images/{image_id}'):
            self.fixture.config(remote_url=url, group='substrate_cache')
            substrate_conf.validate(self.conf)

    def test_cache_budget_below_quota(self):
        self.assertInvalid('budget_mb', group='substrate_cache',
                           budget_mb=64, quota_mb=128)

    def test_cache_relative_path(self):
        self.assertInvalid('cache_path', group='substrate_cache',
                           cache_path='caches')

    def test_cache_unknown_qemu_group(self):
        self.assertInvalid('qemu_group', group='substrate_cache',
                           enabled=True, qemu_group='no-such-group-here')

    def test_relative_pool_path(self):
        self.assertInvalid('pool_path', pool_path='pool')

    def test_relative_hook_path(self):
        self.assertInvalid('hook_path', hook_path='hook')

    def test_layers_in_the_pool(self):
        self.assertInvalid('layer_path', pool_path='/dev/shm/x',
                           layer_path='/dev/shm/x')

    def test_budget_below_one_substrate(self):
        self.assertInvalid('memory_budget_mb', memory_budget_mb=64,
                           build_memory_mb=128)

    def test_type_and_range_errors_name_the_option(self):
        self.assertRaises(ValueError, self.fixture.config,
                          memory_budget_mb=-1, group='substrate')
        self.assertRaises(ValueError, self.fixture.config,
                          spare_pcie_ports=40, group='substrate')

    def test_bad_value_in_a_file_names_the_option(self):
        path = self.useFixture(fixtures.TempDir()).path
        with open(path + '/bad.conf', 'w') as f:
            f.write('[substrate]\nbuild_memory_mb = lots\n')
        conf = cfg.ConfigOpts()
        substrate_conf.register_opts(conf)
        conf(['--config-file', path + '/bad.conf'], default_config_files=[])
        e = self.assertRaises(cfg.ConfigFileValueError,
                              getattr, conf.substrate, 'build_memory_mb')
        self.assertIn('build_memory_mb', str(e))

    def test_malformed_pool_entry(self):
        self.assertInvalid('pools', pools=['image-only'])

    def test_pool_count_out_of_range(self):
        self.assertInvalid('pools', pools=['img:flavor:0'])

    def test_pool_count_not_a_number(self):
        self.assertInvalid('pools', pools=['img:flavor:two'])

    def test_pool_entries_parse(self):
        self.fixture.config(pools=['img-1:m1.substrate:3', ' img-2 : 42 : 1'],
                            group='substrate')
        substrate_conf.validate(self.conf)
        self.assertEqual([('img-1', 'm1.substrate', 3), ('img-2', '42', 1)],
                         [substrate_conf.parse_pool_entry(e)
                          for e in self.conf.substrate.pools])

    def test_demand_bound_below_floor(self):
        self.assertInvalid('max_substrates_per_key', substrates_per_key=8,
                           max_substrates_per_key=4)

    def test_relative_activation_log(self):
        self.assertInvalid('activation_log', activation_log='log.jsonl')
