"""Faults during activation: each is detected, and nothing leaks."""

import dataclasses
import os

from nova_substrate.engine import activate
from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import saveimage
from tests.integration import base


class ActivationFaultTest(base.SubstrateTestCase):

    def ready_substrate(self):
        """Path of the one ready substrate of the class template."""
        self.pool.fill(self.template.key, 1)
        ready = os.path.join(self.pool.path, 'ready', self.template.key)
        return os.path.join(ready, sorted(os.listdir(ready))[0])

    def drain(self):
        while self.pool.ready_count(self.template.key):
            self.pool.claim(self.template.key).discard()

    def activate_expecting(self, error, settings=base.SETTINGS):
        spec = self.clone_spec('doomed')
        e = self.assertRaises(error, activate.activate_clone, self.conn,
                              self.pool, self.template.key, spec, settings,
                              copy_if_empty=False)
        self.assertNoTrace(spec)
        return e

    def test_truncated_substrate_never_reaches_libvirt(self):
        self.drain()
        path = self.ready_substrate()
        os.truncate(path, os.path.getsize(path) // 2)
        e = self.activate_expecting(exception.ActivationError)
        self.assertIn('truncated', str(e))
        self.assertIsInstance(e.__cause__, exception.SaveImageError)

    def test_corrupt_header_never_reaches_libvirt(self):
        self.drain()
        path = self.ready_substrate()
        with open(path, 'r+b') as f:
            f.write(b'garbage garbage!')
        e = self.activate_expecting(exception.ActivationError)
        self.assertIn('not a libvirt save image', str(e))

    def test_corrupt_memory_is_caught_before_the_guest_runs(self):
        # A template of its own: the corrupt one is removed from the pool.
        template = self.build_template()
        self.pool.fill(template.key, 1)
        ready = os.path.join(self.pool.path, 'ready', template.key)
        path = os.path.join(ready, os.listdir(ready)[0])
        header = saveimage.read_header(path)
        with open(path, 'r+b') as f:
            f.seek(header.stream_offset + template.stream_bytes // 2)
            f.write(os.urandom(64))
        spec = self.clone_spec('doomed')
        self.assertRaises(exception.CorruptSubstrate, activate.activate_clone,
                          self.conn, self.pool, template.key, spec,
                          base.SETTINGS, copy_if_empty=False)
        self.assertNoTrace(spec)
        self.assertIsNone(self.pool.get(template.key))

    def test_agent_that_never_answers(self):
        # The guest is frozen right before the host asks for its identity:
        # its agent is alive as a socket but never answers.
        real_hook = guest_agent.GuestAgent.hook

        def frozen_hook(agent, *args, **kwargs):
            agent.domain.suspend()
            return real_hook(agent, *args, **kwargs)
        self.patch(guest_agent.GuestAgent, 'hook', frozen_hook)
        settings = dataclasses.replace(base.SETTINGS, activate_timeout=3.0)
        self.pool.fill(self.template.key, 1)
        e = self.activate_expecting(exception.ActivationError, settings)
        self.assertIsInstance(e.__cause__, (exception.GuestAgentTimeout,
                                            exception.GuestCommandFailed))

    def test_restore_failure(self):
        # An XML whose devices do not match the saved stream: QEMU refuses
        # the migration stream after libvirt has started the domain.
        real = domainxml.reidentify

        def without_balloon(*args, **kwargs):
            root = domainxml.parse(real(*args, **kwargs))
            devices = root.find('devices')
            devices.remove(devices.find('memballoon'))
            devices.append(domainxml.parse("<memballoon model='none'/>"))
            return domainxml.tostring(root)
        self.patch(domainxml, 'reidentify', without_balloon)
        self.pool.fill(self.template.key, 1)
        e = self.activate_expecting(exception.ActivationError)
        self.assertIn('libvirt', type(e.__cause__).__module__)

    def test_hook_missing_in_guest(self):
        settings = dataclasses.replace(base.SETTINGS,
                                       hook_path='/usr/sbin/no-such-hook')
        self.pool.fill(self.template.key, 1)
        self.activate_expecting(exception.ActivationError, settings)
