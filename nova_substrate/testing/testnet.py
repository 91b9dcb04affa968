"""A real L2 path from the host to test guests, and SSH over it.

The guests' NICs are tap devices that Nova's VIF driver makes on the
host. The fixture puts them on a Linux bridge of its own; the bridge's
other port is one end of a veth pair whose far end sits in a network
namespace the fixture creates, holding the subnet's gateway address.
Whatever runs in that namespace (ssh, ssh-keyscan) reaches the guests'
addresses as a machine on their subnet would, and nothing of the subnet
is configured in the host's own namespace.
"""

import os
import subprocess
import tempfile
import time
import uuid

import fixtures

SSH_OPTIONS = ('-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
               '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
               '-o', 'ConnectTimeout=10')


def _run(*cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, capture_output=True, text=True,
                          **kwargs)


class TestNetwork(fixtures.Fixture):
    """A bridge, a namespace with gateway_cidr in it, and SSH from there."""

    def __init__(self, gateway_cidr):
        super().__init__()
        self.gateway_cidr = gateway_cidr

    def _setUp(self):
        tag = uuid.uuid4().hex[:8]
        self.bridge = 'nsbr-' + tag
        self.namespace = 'nsnet-' + tag
        host_end, ns_end = 'nsvh-' + tag, 'nsvn-' + tag
        # Each cleanup is registered before its step, so a half-made
        # network is taken down too.
        self.addCleanup(_run, 'ip', 'link', 'del', self.bridge, check=False)
        _run('ip', 'link', 'add', self.bridge, 'type', 'bridge')
        self.addCleanup(_run, 'ip', 'netns', 'del', self.namespace,
                        check=False)
        _run('ip', 'netns', 'add', self.namespace)
        self.addCleanup(_run, 'ip', 'link', 'del', host_end, check=False)
        _run('ip', 'link', 'add', host_end, 'type', 'veth', 'peer', 'name',
             ns_end)
        _run('ip', 'link', 'set', ns_end, 'netns', self.namespace)
        _run('ip', 'link', 'set', host_end, 'master', self.bridge, 'up')
        _run('ip', 'link', 'set', self.bridge, 'up')
        self.netns('ip', 'addr', 'add', self.gateway_cidr, 'dev', ns_end)
        self.netns('ip', 'link', 'set', ns_end, 'up')
        self.netns('ip', 'link', 'set', 'lo', 'up')
        key_dir = self.useFixture(fixtures.TempDir()).path
        self.private_key = os.path.join(key_dir, 'id_ed25519')
        _run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C',
             'tenant@nova-substrate-test', '-f', self.private_key)
        with open(self.private_key + '.pub') as f:
            self.public_key = f.read().strip()

    def netns(self, *cmd, check=True, timeout=60):
        return _run('ip', 'netns', 'exec', self.namespace, *cmd,
                    check=check, timeout=timeout)

    def attach(self, tap):
        """Put a guest's tap device on the bridge."""
        _run('ip', 'link', 'set', tap, 'master', self.bridge, 'up')

    def ssh(self, user, address, command, timeout=30):
        """(exit status, stdout, stderr) of command run over SSH."""
        result = self.netns('ssh', *SSH_OPTIONS, '-i', self.private_key,
                            '%s@%s' % (user, address), command,
                            check=False, timeout=timeout)
        return result.returncode, result.stdout, result.stderr

    def wait_for_ssh(self, user, address, timeout):
        """Seconds until an SSH login with the key works; fails at timeout."""
        started = time.monotonic()
        last = None
        while time.monotonic() - started < timeout:
            status, out, err = self.ssh(user, address, 'true', timeout=20)
            if status == 0:
                return time.monotonic() - started
            last = err.strip() or out.strip()
            time.sleep(0.5)
        raise AssertionError('no SSH login as %s@%s within %.0f s: %s'
                             % (user, address, timeout, last))

    def host_keys(self, address):
        """The SSH host keys a server at address offers, sorted."""
        result = self.netns('ssh-keyscan', '-T', '5', address, check=False)
        return sorted(line.split(None, 1)[1]
                      for line in result.stdout.splitlines()
                      if line and not line.startswith('#'))


def write_user_data(text):
    """A temporary file holding text (for tools that read files)."""
    fd, path = tempfile.mkstemp(prefix='user-data-')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    return path
