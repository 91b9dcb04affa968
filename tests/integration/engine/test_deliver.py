"""The hook, its helper and the cloud-init runner delivered to a booted
tiny guest by the agent.

The tiny guest carries the hook and the helper on its initramfs root;
they are removed through the agent, as if the image had never had them,
and delivered again the way a build does: guest-file writes and one
guest-exec. The tiny guest has no python3: the runner is only a file
there, checked by its mode and its sha256.
"""

import hashlib
import os
import time
import uuid


from nova_substrate.engine import deliver
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import guest_tools
from nova_substrate.engine import qemuimg
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain
from tests.integration import base

HOOK = '/usr/sbin/nova-substrate-hook'
GUESTUTIL = deliver.GUESTUTIL_PATH
RUNNER = deliver.CLOUD_INIT_RUNNER_PATH
BOOT_TIMEOUT_S = 120
CALL_TIMEOUT_S = 60
READY_LINE = 'nova-substrate-guest: ready'
# Lists what is left in /usr/sbin of the tools, temporary files included.
LIST_SCRIPT = 'cd /usr/sbin && ls -A | grep nova-substrate || true'


class DeliverTest(base.LibvirtTestCase):

    MEMORY_MB = 256
    VCPUS = 1

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest = guests.get_guest('tiny', cache_dir=base.GUEST_CACHE)
        cls.tools = guest_tools.GuestTools(
            cache_dir=os.path.join(cls.work, 'guest-tools'))
        name = 'it-deliver-%s' % uuid.uuid4().hex[:8]
        cls.domain_uuid = str(uuid.uuid4())
        cls.console_log = os.path.join(cls.work, name + '.log')
        overlay = os.path.join(cls.work, name + '.qcow2')
        qemuimg.create_overlay(overlay, cls.guest.disk, 'qcow2')
        xml = guest_domain.instance_xml(
            cls.guest, name, cls.domain_uuid, cls.MEMORY_MB, cls.VCPUS,
            overlay, cls.console_log)
        cls.start_domain(xml, cls.domain_uuid, cls.console_log)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        cls.wait_for_console(READY_LINE, deadline)
        cls.agent = guest_agent.GuestAgent(cls.dom)
        cls.agent.wait_ready(deadline)

    def install(self):
        return deliver.install_guest_tools(
            self.agent, HOOK, GUESTUTIL, self.tools,
            time.monotonic() + CALL_TIMEOUT_S)

    def status(self):
        return self.agent.hook(HOOK, 'status',
                               deadline=time.monotonic() + CALL_TIMEOUT_S)

    def remove_tools(self):
        self.guest_run(self.dom, 'rm -f %s %s %s' % (HOOK, GUESTUTIL, RUNNER))

    def assertDelivered(self):
        self.assertEqual(self.tools.hook_version(),
                         self.status()['hook_version'])
        listing = self.guest_run(self.dom, LIST_SCRIPT).split()
        self.assertEqual(['nova-substrate-cloud-init',
                          'nova-substrate-guestutil', 'nova-substrate-hook'],
                         sorted(listing))
        modes = self.guest_run(self.dom, 'stat -c %%a %s %s %s'
                               % (HOOK, GUESTUTIL, RUNNER)).split()
        self.assertEqual(['755', '755', '755'], modes)
        sums = self.guest_run(self.dom, 'sha256sum %s %s %s'
                              % (HOOK, GUESTUTIL, RUNNER)).splitlines()
        expected = [self.sha256(self.tools.hook_source()),
                    self.sha256(self.tools.guestutil_binary()),
                    self.sha256(self.tools.cloud_init_runner_source())]
        self.assertEqual(expected, [line.split()[0] for line in sums])

    @staticmethod
    def sha256(path):
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()

    def test_guest_without_tools_gets_them(self):
        self.remove_tools()
        self.assertRaises(exception.GuestCommandFailed, self.status)
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + CALL_TIMEOUT_S))
        self.assertTrue(self.install())
        self.assertDelivered()
        # The helper runs: the hook's activate needs it.
        self.guest_run(self.dom,
                       '%s settime %d' % (GUESTUTIL, time.time_ns()))
        self.assertFalse(self.install())

    def test_other_hook_version_is_replaced(self):
        self.remove_tools()
        self.guest_run(self.dom, "printf '#!/bin/sh\\nHOOK_VERSION=0\\n' > "
                       "%s && chmod 0755 %s && cp /bin/busybox %s && "
                       "cp %s %s" % (HOOK, HOOK, GUESTUTIL, HOOK, RUNNER))
        self.assertEqual('0', deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + CALL_TIMEOUT_S))
        self.assertTrue(self.install())
        self.assertDelivered()

    def test_missing_runner_brings_all_three(self):
        self.install()
        self.guest_run(self.dom, 'rm -f %s' % RUNNER)
        self.assertIsNone(deliver.installed_version(
            self.agent, HOOK, GUESTUTIL, time.monotonic() + CALL_TIMEOUT_S))
        self.assertTrue(self.install())
        self.assertDelivered()
        self.assertFalse(self.install())
