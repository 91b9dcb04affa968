"""A build waits for the guest's first boot, saying what it waits for."""

from unittest import mock

import testtools

from nova_substrate.engine import build
from nova_substrate.engine import exception
from nova_substrate.engine import settings as engine_settings

SETTINGS = engine_settings.EngineSettings(build_timeout=300.0)


class FakeAgent(object):

    def __init__(self, statuses, ready_error=None):
        self.statuses = list(statuses)
        self.ready_error = ready_error

    def wait_ready(self, deadline):
        if self.ready_error:
            raise self.ready_error

    def hook(self, hook_path, subcommand, fields=None, deadline=None,
             accept=(0,)):
        assert subcommand == 'status'
        return self.statuses.pop(0) if len(self.statuses) > 1 else \
            self.statuses[0]


@mock.patch('time.sleep', lambda s: None)
class WaitFirstBootTest(testtools.TestCase):

    def test_says_each_change_then_returns_the_ready_status(self):
        said = []
        agent = FakeAgent([
            {'ready': False, 'init': 'starting', 'cloud_init': 'running'},
            {'ready': False, 'init': 'starting', 'cloud_init': 'running'},
            {'ready': False, 'init': 'running', 'cloud_init': 'running'},
            {'ready': True, 'init': 'running', 'cloud_init': 'done'},
        ])
        status = build.wait_first_boot(agent, SETTINGS, float('inf'),
                                       said.append)
        self.assertEqual('done', status['cloud_init'])
        self.assertEqual([
            'waiting for the first boot to finish: init system starting, '
            'cloud-init running',
            'waiting for the first boot to finish: init system running, '
            'cloud-init running'], said)

    def test_timeout_names_the_option_and_what_the_guest_was_doing(self):
        agent = FakeAgent([{'ready': False, 'init': 'starting',
                            'cloud_init': 'running'}])
        e = self.assertRaises(exception.GuestAgentTimeout,
                              build.wait_first_boot, agent, SETTINGS, 0,
                              lambda msg: None)
        self.assertIn('[substrate] build_timeout', str(e))
        self.assertIn('300 s', str(e))
        self.assertIn('init system starting, cloud-init running', str(e))

    def test_an_agent_that_never_answers_names_the_option(self):
        agent = FakeAgent([], ready_error=exception.GuestAgentTimeout('x'))
        e = self.assertRaises(exception.GuestAgentTimeout, build.wait_agent,
                              agent, SETTINGS, 0)
        self.assertIn('[substrate] build_timeout', str(e))
        self.assertIn('hw_qemu_guest_agent=yes', str(e))
