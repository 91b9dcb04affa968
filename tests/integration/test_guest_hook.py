"""The in-guest hook (guest/nova-substrate-hook) in a booted tiny guest.

One guest is booted for the class, with a NIC, and the hook is run the
way the engine runs it: through the QEMU guest agent's guest-exec, with
its input on stdin. What it did is then read back from inside the guest.
"""

import base64
import json
import os
import re
import time
import uuid


from nova_substrate.engine import domainxml
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import guest_tools
from nova_substrate.engine import qemuimg
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain
from tests.integration import base

HOOK = '/usr/sbin/nova-substrate-hook'
STATE_DIR = '/run/nova-substrate'
BOOT_TIMEOUT_S = 120
CALL_TIMEOUT_S = 30
# The guest's init prints this once the agent runs and the marker the
# hook's status reads is written.
READY_LINE = 'nova-substrate-guest: ready'
DAY_NS = 86400 * 10 ** 9

# The guest's identity: each part after a "== name" line and followed by
# one newline more, so that a file without a final newline still ends
# before the next header.
SNAPSHOT_SCRIPT = '''
show() { echo "== $1"; shift; "$@"; echo; }
show hostname hostname
for f in /etc/hostname /etc/hosts /etc/machine-id \
        /etc/ssh/ssh_host_ed25519_key.pub \
        %(state)s/activated %(state)s/identity.env %(state)s/metadata.json \
        %(state)s/ssh-generation %(state)s/ssh-keygen.pid; do
    [ -e "$f" ] && show "$f" cat "$f"
done
show /etc/ssh ls /etc/ssh
show %(state)s ls -A %(state)s
echo "== end"
''' % {'state': STATE_DIR}
ED25519_PUB = '/etc/ssh/ssh_host_ed25519_key.pub'
# Where the background job of an activation makes the ecdsa and rsa host
# keys, before it moves each into /etc/ssh.
KEY_JOB_DIR = re.compile(r'ssh-[0-9a-f]{32}$')
WAIT_FOR_FILE_SCRIPT = '''
i=0
while [ ! -e '%(path)s' ] && [ "$i" -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -e '%(path)s' ]
'''


class GuestHookTest(base.LibvirtTestCase):

    MEMORY_MB = 256
    VCPUS = 2

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest = guests.get_guest('tiny', cache_dir=base.GUEST_CACHE)
        name = 'it-hook-%s' % uuid.uuid4().hex[:8]
        cls.domain_uuid = str(uuid.uuid4())
        cls.mac = base.random_mac()
        cls.console_log = os.path.join(cls.work, name + '.log')
        overlay = os.path.join(cls.work, name + '.qcow2')
        qemuimg.create_overlay(overlay, cls.guest.disk, 'qcow2')
        xml = guest_domain.instance_xml(
            cls.guest, name, cls.domain_uuid, cls.MEMORY_MB, cls.VCPUS,
            overlay, cls.console_log,
            nics=[domainxml.interface_xml(cls.mac)])
        cls.start_domain(xml, cls.domain_uuid, cls.console_log)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        cls.wait_for_console(READY_LINE, deadline)
        cls.agent = guest_agent.GuestAgent(cls.dom)
        cls.agent.wait_ready(deadline)

    def run_hook(self, command, fields=None):
        stdin = None
        if fields is not None:
            stdin = ''.join('%s=%s\n' % item for item in fields.items())
        return self.agent.run(HOOK, [command], stdin=stdin,
                              deadline=time.monotonic() + CALL_TIMEOUT_S)

    def status(self):
        result = self.run_hook('status')
        self.assertEqual(0, result.exitcode, result.stderr)
        return result.json()

    def snapshot(self):
        """The guest's identity files, by name."""
        files = {}
        lines = None
        for line in self.guest_run(self.dom, SNAPSHOT_SCRIPT).splitlines():
            if line.startswith('== '):
                lines = files.setdefault(line[3:], [])
            else:
                lines.append(line)
        del files['end']
        return {name: '\n'.join(lines) for name, lines in files.items()}

    def identity(self):
        """The snapshot less what an activation's key job still changes."""
        files = self.snapshot()
        del files['/etc/ssh']
        files[STATE_DIR] = [name for name in files[STATE_DIR].split()
                            if not KEY_JOB_DIR.match(name)]
        return files

    def wait_for_file(self, path):
        self.guest_run(self.dom, WAIT_FOR_FILE_SCRIPT % {'path': path})

    def activation_fields(self, hostname, time_ns=None, **extra):
        fields = {
            'time_ns': time_ns or time.time_ns(),
            'seed': os.urandom(64).hex(),
            'hostname': hostname,
            'instance_uuid': str(uuid.uuid4()),
        }
        fields.update(extra)
        return fields

    def activate(self, hostname, **extra):
        fields = self.activation_fields(hostname, **extra)
        result = self.run_hook('activate', fields)
        self.assertEqual(0, result.exitcode, result.stdout + result.stderr)
        return fields, result.json()

    def guest_nic(self):
        """(interface name, IFF_UP set) of the guest's NIC with our MAC."""
        out = self.guest_run(self.dom, (
            'for d in /sys/class/net/*; do read -r a < $d/address; '
            'read -r f < $d/flags; echo "${d##*/} $a $f"; done'))
        for line in out.splitlines():
            iface, mac, flags = line.split()
            if mac == self.mac:
                return iface, bool(int(flags, 16) & 1)
        self.fail('no NIC with MAC %s in the guest:\n%s' % (self.mac, out))

    def test_status_says_ready(self):
        status = self.status()
        self.assertEqual({'ready', 'activated', 'hook_version', 'init',
                          'cloud_init'}, set(status))
        self.assertIs(True, status['ready'])
        self.assertEqual(guest_tools.GuestTools().hook_version(),
                         status['hook_version'])
        # busybox init: the guest's init writes the boot marker
        self.assertEqual('running', status['init'])
        self.assertEqual('absent', status['cloud_init'])
        marker = self.guest_run(self.dom, '[ -e %s/activated ] && echo yes '
                                '|| echo no' % STATE_DIR)
        self.assertEqual(marker == 'yes', status['activated'])

    def test_unknown_command_is_refused(self):
        result = self.run_hook('reboot')
        self.assertEqual(2, result.exitcode)
        self.assertIn('usage: nova-substrate-hook COMMAND', result.stderr)

    def test_invalid_activation_changes_nothing(self):
        before = self.identity()
        bad_inputs = [
            ('hostname', {'hostname': 'bad host'}),
            ('hostname', {'hostname': '-leading-dash'}),
            ('hostname', {'hostname': 'h' * 65}),
            ('instance_uuid', {'instance_uuid': 'not-a-uuid'}),
            ('instance_uuid', {'instance_uuid': ''}),
            ('seed', {'seed': 'not hex'}),
            ('time_ns', {'time_ns': '17e17'}),
            ('vcpus', {'vcpus': 'two'}),
            ('macs', {'macs': self.mac + ';rm -rf /'}),
            ('metadata_b64', {'metadata_b64': 'e30=$(reboot)'}),
            ('ssh_keys', {'ssh_keys': 'later'}),
        ]
        for field, bad in bad_inputs:
            # the clock would go back to 1970 if anything were applied
            fields = self.activation_fields('valid-name', time_ns=10 ** 9)
            fields.update(bad)
            result = self.run_hook('activate', fields)
            self.assertEqual(1, result.exitcode, (bad, result.stdout))
            answer = result.json()
            self.assertIs(False, answer['activated'])
            self.assertTrue(answer['error'].startswith('invalid input: %s '
                                                       % field),
                            (bad, answer))
        self.assertEqual(before, self.identity())
        self.assertNotIn('valid-name', self.guest_run(self.dom, 'hostname'))
        guest_epoch = int(self.guest_run(self.dom, 'date +%s'))
        self.assertGreater(guest_epoch, 10 ** 9)

    def test_activate_gives_the_guest_its_identity(self):
        # Undo what the boot or an earlier activation did, so that the
        # activation has to do it: the NIC down, the second vCPU offline.
        iface, _up = self.guest_nic()
        self.guest_run(self.dom, 'ip link set dev %s down; '
                       'echo 0 > /sys/devices/system/cpu/cpu1/online'
                       % iface)
        self.assertEqual((iface, False), self.guest_nic())
        self.assertEqual('0', self.guest_run(
            self.dom, 'cat /sys/devices/system/cpu/cpu1/online'))

        hostname = 'vm-%s' % uuid.uuid4().hex[:8]
        metadata = {'uuid': str(uuid.uuid4()), 'name': 'hook test',
                    'meta': {'role': 'test', 'quote': '"\\'}}
        # a day ahead: only a clock the hook set can read that
        time_ns = time.time_ns() + DAY_NS
        fields, answer = self.activate(
            hostname, time_ns=time_ns, vcpus=self.VCPUS,
            macs=self.mac.upper(),
            metadata_b64=base64.b64encode(
                json.dumps(metadata).encode()).decode())

        self.assertIs(True, answer['activated'])
        self.assertNotIn('error', answer)
        self.assertEqual(hostname, answer['hostname'])
        self.assertRegex(answer['machine_id'], '^[0-9a-f]{32}$')
        self.assertEqual(self.VCPUS, answer['vcpus_online'])
        self.assertEqual([self.mac], answer['macs_up'])
        self.assertTrue(answer['ssh_host_key'].startswith('ssh-ed25519 '))
        self.assertTrue(answer['ssh_host_key'].endswith(' root@' + hostname))
        self.assertLess(abs(answer['time_ns'] - time_ns), DAY_NS // 24)

        files = self.snapshot()
        self.assertEqual(hostname + '\n', files['hostname'])
        self.assertEqual(hostname + '\n', files['/etc/hostname'])
        self.assertIn('127.0.1.1\t%s\n' % hostname, files['/etc/hosts'])
        self.assertEqual(answer['machine_id'] + '\n',
                         files['/etc/machine-id'])
        self.assertEqual(
            'NOVA_SUBSTRATE_HOSTNAME=%s\n'
            'NOVA_SUBSTRATE_INSTANCE_UUID=%s\n'
            'NOVA_SUBSTRATE_MACHINE_ID=%s\n'
            'NOVA_SUBSTRATE_BOOT_ID=%s\n'
            % (hostname, fields['instance_uuid'], answer['machine_id'],
               answer['boot_id']),
            files[STATE_DIR + '/identity.env'])
        self.assertEqual(metadata,
                         json.loads(files[STATE_DIR + '/metadata.json']))
        self.assertIn(STATE_DIR + '/activated', files)
        self.assertEqual(answer['ssh_host_key'] + '\n', files[ED25519_PUB])
        self.assertEqual((iface, True), self.guest_nic())
        self.assertEqual('1', self.guest_run(
            self.dom, 'cat /sys/devices/system/cpu/cpu1/online'))
        guest_epoch = int(self.guest_run(self.dom, 'date +%s'))
        self.assertLess(abs(guest_epoch - time_ns // 10 ** 9), 3600)
        self.assertIs(True, self.status()['activated'])

    def test_activation_gives_a_new_boot_id(self):
        before = self.guest_run(self.dom,
                                'cat /proc/sys/kernel/random/boot_id')
        _fields, answer = self.activate('new-boot')
        after = self.guest_run(self.dom,
                               'cat /proc/sys/kernel/random/boot_id')
        self.assertRegex(answer['boot_id'], '^[0-9a-f-]{36}$')
        self.assertEqual(answer['boot_id'], after)
        self.assertNotEqual(before, after)
        _fields, again = self.activate('newer-boot')
        self.assertEqual(again['boot_id'], self.guest_run(
            self.dom, 'cat /proc/sys/kernel/random/boot_id'))
        self.assertNotEqual(answer['boot_id'], again['boot_id'])

    def test_instance_data_is_readable_by_root_only(self):
        self.activate('private', metadata_b64=base64.b64encode(
            b'{"secret": 1}').decode())
        self.assertEqual('700 600', self.guest_run(
            self.dom, 'stat -c %%a %s %s/metadata.json'
            % (STATE_DIR, STATE_DIR)).replace('\n', ' '))

    def test_identity_then_network(self):
        # What the engine does for a clone with NICs: identity first, the
        # NICs are plugged, then network.
        iface, _up = self.guest_nic()
        self.guest_run(self.dom, 'ip link set dev %s down' % iface)
        fields = self.activation_fields('two-steps')
        result = self.run_hook('identity', fields)
        self.assertEqual(0, result.exitcode, result.stdout + result.stderr)
        identity = result.json()
        self.assertIs(True, identity['identity'])
        self.assertEqual('two-steps', identity['hostname'])
        self.assertNotIn('macs_up', identity)
        self.assertEqual((iface, False), self.guest_nic())
        result = self.run_hook('network', {
            'instance_uuid': fields['instance_uuid'], 'macs': self.mac,
            # No cloud-init in this guest: the data is not used, and the
            # hook brings the NIC up itself.
            'instance_data_b64': base64.b64encode(b'not a tar').decode()})
        self.assertEqual(0, result.exitcode, result.stdout + result.stderr)
        network = result.json()
        self.assertEqual([self.mac], network['macs_up'])
        self.assertEqual('absent', network['cloud_init'])
        self.assertEqual((iface, True), self.guest_nic())

    def test_each_activation_is_a_new_machine(self):
        _fields, first = self.activate('first')
        _fields, second = self.activate('second')
        self.assertNotEqual(first['machine_id'], second['machine_id'])
        self.assertNotEqual(first['ssh_host_key'], second['ssh_host_key'])
        self.assertEqual('second', self.guest_run(self.dom, 'hostname'))

    def test_activate_without_metadata_writes_an_empty_document(self):
        self.activate('no-metadata')
        self.assertEqual('{}', self.guest_run(
            self.dom, 'cat %s/metadata.json' % STATE_DIR))

    def test_generalize_leaves_no_identity_behind(self):
        _fields, answer = self.activate('to-forget')
        # The ecdsa key is in place once the key job moved its .pub; the
        # job then makes the rsa key, which generalize must stop.
        self.wait_for_file('/etc/ssh/ssh_host_ecdsa_key.pub')
        activated = self.snapshot()
        self.assertEqual('to-forget\n', activated['hostname'])
        self.assertEqual(answer['machine_id'] + '\n',
                         activated['/etc/machine-id'])
        self.assertEqual(answer['ssh_host_key'] + '\n',
                         activated[ED25519_PUB])
        self.assertIn(STATE_DIR + '/identity.env', activated)
        self.assertIn('ssh_host_ecdsa_key', activated['/etc/ssh'].split())

        result = self.run_hook('generalize')
        self.assertEqual(0, result.exitcode, result.stdout + result.stderr)
        self.assertEqual({'generalized': True}, result.json())

        files = self.snapshot()
        self.assertEqual('substrate\n', files['hostname'])
        self.assertEqual('substrate\n', files['/etc/hostname'])
        self.assertIn('127.0.1.1\tsubstrate\n', files['/etc/hosts'])
        self.assertNotIn('to-forget', files['/etc/hosts'])
        self.assertEqual('', files['/etc/machine-id'])
        self.assertEqual('', files['/etc/ssh'])
        # of the hook's state only the boot marker is left
        self.assertEqual('booted\n', files[STATE_DIR])
        self.assertEqual(
            {'hostname', '/etc/hostname', '/etc/hosts', '/etc/machine-id',
             '/etc/ssh', STATE_DIR}, set(files))
        status = self.status()
        self.assertEqual((True, False), (status['ready'],
                                         status['activated']))
