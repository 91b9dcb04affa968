"""bench nova: POST /servers to ACTIVE and to guest-ready, through Nova.

Measured in Nova's in-process cloud (nova_substrate.testing) on the
host's real libvirtd, with SubstrateDriver as the compute driver, for two
flavors of the same size:

- the substrate flavor (substrate:enabled=true): the instance is
  activated from a docked substrate;
- the normal flavor: the same driver boots the instance as
  LibvirtDriver does.

For each server, from just before ``POST /servers``:

- active_s: until ``GET /servers/{id}`` first shows ACTIVE (polled every
  20 ms);
- ready_s: until the in-guest hook, asked through the guest agent, says
  the guest finished booting.

The two flavors' ACTIVE are not the same milestone: SubstrateDriver's
spawn returns once the clone confirmed its new identity, so an activated
server is ACTIVE when it is about ready, while a booted one is ACTIVE as
soon as its domain runs, with its boot still ahead. ready_s is the
comparable time; ratio is that of the ready_s medians.

With ``--guest cloud`` (a Debian cloud image with cloud-init), each server
is created as a tenant creates one: with a keypair, ``#cloud-config``
user-data and a port with a static address (the booted one reads the same
data from a config drive: the in-process cloud has no metadata service),
and instead of ready_s:

- ssh_s: until ``ssh`` with the keypair's private key logs in, from a
  network namespace on the servers' subnet (nova_substrate.testing);
- userdata_s: until the user-data's ``runcmd`` has written its marker;

ratio is then that of the ssh_s medians (booted over activated), and
userdata_ratio that of userdata_s.

Each run spawns one server of each flavor, one after the other, each once
the pool is full again, so both see the same state of the machine. A
substrate server that was booted instead (no substrate, a failed
activation) fails the benchmark: its numbers would be a boot's under the
substrate's name.

Needs what the functional tests need: Nova's test harness and the
project's test requirements, root and a running libvirtd.
"""

# First: it makes Nova's threading choice for the process, which has to
# come before Nova, oslo.messaging or oslo.service is imported (oslo.service
# would otherwise pick its eventlet backend, and Nova then refuses to run).
import nova_substrate.testing  # noqa: F401

import logging
import os
import statistics
import time
import unittest

import fixtures
from oslo_config import cfg

from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate import notifications
from nova_substrate.testing import cloud_guest
from nova_substrate.testing import substrate_cloud

SUBSTRATE = 'substrate'
NORMAL = 'normal'
#: How each flavor's servers must have been spawned.
EXPECTED_MODE = {SUBSTRATE: notifications.ACTIVATED,
                 NORMAL: notifications.BOOTED}
MEASURES = ('active_s', 'ready_s')
CLOUD_MEASURES = ('active_s', 'ssh_s', 'userdata_s')
MILESTONES = {'active_s': 'ACTIVE', 'ready_s': 'guest-ready',
              'ssh_s': 'SSH login', 'userdata_s': 'user-data run'}
#: What the benchmark's cloud servers run: the marker userdata_s waits for.
USERDATA_MARKER = '/var/lib/tenant/bench.done'
CLOUD_USER_DATA = """#cloud-config
runcmd:
  - [sh, -c, 'mkdir -p /var/lib/tenant && touch %s']
""" % USERDATA_MARKER

POLL_INTERVAL = 0.02
# Bounds of each wait, generous for TCG guests on a busy host.
ACTIVE_TIMEOUT = 120.0
READY_TIMEOUT = 120.0


class BenchFailed(exception.SubstrateError):
    """The benchmark's cloud or one of its servers failed."""


class Measurement(object):
    """What one benchmark collects, kept outside the test case.

    The harness deletes a test's public attributes at cleanup, so the
    case writes here and run() reads from here afterwards.
    """

    def __init__(self, runs, progress=None, measures=MEASURES,
                 ratio_measure='ready_s'):
        self.runs = runs
        self.measures = measures
        self.ratio_measure = ratio_measure
        self.say = progress or (lambda msg: None)
        self.spawns = []
        self.guest = None
        self.flavor = None
        self.host = None

    def values(self, flavor, measure):
        return [s[measure] for s in self.spawns if s['flavor'] == flavor]

    def result(self):
        result = {'guest': self.guest, 'flavor': self.flavor,
                  'host': self.host, 'run_count': self.runs}
        runs = {}
        for flavor in (SUBSTRATE, NORMAL):
            for measure in self.measures:
                name = '%s_%s' % (flavor, measure)
                runs[name] = [round(v, 4)
                              for v in self.values(flavor, measure)]
                result[name] = round(statistics.median(runs[name]), 4)
        result['runs'] = runs
        for measure in self.measures:
            ratio = ('ratio' if measure == self.ratio_measure
                     else measure.replace('_s', '_ratio'))
            result[ratio] = round(result['normal_' + measure] /
                                  result['substrate_' + measure], 2)
        result['spawns'] = self.spawns
        return result


class _Bench(object):
    """The measurement, as a test of the cloud's harness.

    Run through run(), which hands it a Measurement; the harness's
    fixtures set the cloud up and tear it down around test_measure.
    """

    def __init__(self, methodName='test_measure', measurement=None):
        super().__init__(methodName)
        self._measurement = measurement or Measurement(runs=1)

    def test_measure(self):
        m = self._measurement
        m.guest = self.guest.name
        m.flavor = {'memory_mb': self.FLAVOR_MEMORY_MB,
                    'vcpus': self.FLAVOR_VCPUS,
                    'root_gb': self.FLAVOR_ROOT_GB}
        m.host = {'cpus': os.cpu_count(),
                  'virt_type': cfg.CONF.libvirt.virt_type}
        m.say("building the pool's substrate")
        started = time.monotonic()
        self.wait_for_substrate()
        m.say('substrate docked in %.1f s' % (time.monotonic() - started))
        flavor_ids = {SUBSTRATE: self.substrate_flavor_id,
                      NORMAL: self.normal_flavor_id}
        for run in range(1, m.runs + 1):
            for flavor in (SUBSTRATE, NORMAL):
                # Also before the normal server: the refill that follows
                # an activation copies a memory state, and would otherwise
                # run during the normal server's spawn.
                self.wait_for_substrate()
                spawn = self.measure_spawn(flavor, flavor_ids[flavor])
                spawn['run'] = run
                m.spawns.append(spawn)
                m.say('run %d/%d, %s flavor (%s): %s' % (
                    run, m.runs, flavor, spawn['mode'], ', '.join(
                        '%s %.3f s' % (MILESTONES[k], spawn[k])
                        for k in m.measures)))

    def check_mode(self, server, flavor):
        mode, record = self.spawn_mode(server)
        if mode != EXPECTED_MODE[flavor]:
            self.fail('server %s of the %s flavor was %s, not %s: %s'
                      % (server['id'], flavor, mode, EXPECTED_MODE[flavor],
                         substrate_cloud.dump(record)))
        return mode, record

    def measure_spawn(self, flavor, flavor_id):
        """Create, time, check and delete one server of flavor."""
        posted = time.monotonic()
        server = self.boot_server(flavor_id=flavor_id)
        server = self.poll_until_active(server, posted + ACTIVE_TIMEOUT)
        active_s = time.monotonic() - posted
        agent = guest_agent.GuestAgent(self.domain_of(server))
        try:
            agent.wait_booted(self.driver.settings.hook_path,
                              time.monotonic() + READY_TIMEOUT)
        except exception.SubstrateError as e:
            self.fail('server %s (%s flavor) did not become guest-ready: %s'
                      % (server['id'], flavor, e))
        ready_s = time.monotonic() - posted
        mode, record = self.check_mode(server, flavor)
        self.delete_server(server)
        return {'flavor': flavor, 'server_id': server['id'],
                'active_s': round(active_s, 4), 'ready_s': round(ready_s, 4),
                'mode': mode, 'record': record}

    def poll_until_active(self, server, deadline):
        while True:
            current = self.api.get_server(server['id'])
            if current['status'] == 'ACTIVE':
                return current
            if current['status'] == 'ERROR':
                self.fail('server %s went to ERROR: %s'
                          % (server['id'], current.get('fault')))
            if time.monotonic() >= deadline:
                self.fail('server %s not ACTIVE in %.0f s (%s)'
                          % (server['id'], ACTIVE_TIMEOUT,
                             current['status']))
            time.sleep(POLL_INTERVAL)

    def spawn_mode(self, server):
        """How the driver spawned server, and its spawn record (or None).

        The driver records the spawns of substrate flavors only: a server
        it has no record of, and no substrate_spawn system metadata for,
        went through LibvirtDriver's spawn unchanged, i.e. was booted.
        """
        records = [r for r in self.driver.activation_log.read()
                   if r['instance_uuid'] == server['id']]
        if records:
            return records[-1]['mode'], records[-1]
        mode = self.instance_sysmeta(server).get(notifications.SYSMETA_MODE)
        return mode or notifications.BOOTED, None


class NovaBenchCase(_Bench, substrate_cloud.SubstrateDriverTestCase):
    """Servers of the tiny guest, without network: to guest-ready."""


class CloudNovaBenchCase(_Bench, cloud_guest.CloudGuestTestCase):
    """Servers of the cloud guest, as a tenant's: to SSH and user-data."""

    def setUp(self):
        super().setUp()
        self._addresses = ('192.168.1.%d' % n for n in range(100, 250))

    def measure_spawn(self, flavor, flavor_id):
        """Create, time, check and delete one tenant's server of flavor."""
        address = next(self._addresses)
        # The booted server reads its data from a config drive.
        extra = {'config_drive': True} if flavor == NORMAL else {}
        posted = time.monotonic()
        server, address, tap = self.create_server(
            flavor_id, address, CLOUD_USER_DATA, **extra)
        server = self.poll_until_active(
            server, posted + cloud_guest.ACTIVATE_TIMEOUT + ACTIVE_TIMEOUT)
        active_s = time.monotonic() - posted
        self.net.attach(tap)
        self.login(address, cloud_guest.BOOT_SSH_TIMEOUT)
        ssh_s = time.monotonic() - posted
        while True:
            status, _out, _err = self.net.ssh(
                cloud_guest.USER, address, 'test -e %s' % USERDATA_MARKER)
            if status == 0:
                break
            if time.monotonic() - posted > cloud_guest.BOOT_SSH_TIMEOUT:
                self.fail('the user-data of server %s did not run' %
                          server['id'])
            time.sleep(POLL_INTERVAL * 10)
        userdata_s = time.monotonic() - posted
        mode, record = self.check_mode(server, flavor)
        self.delete_server(server)
        return {'flavor': flavor, 'server_id': server['id'],
                'active_s': round(active_s, 4), 'ssh_s': round(ssh_s, 4),
                'userdata_s': round(userdata_s, 4), 'mode': mode,
                'record': record}


def run(runs=5, progress=None, guest='tiny'):
    """Run the benchmark; its result as a JSON-able dict.

    guest is 'tiny' (to guest-ready) or 'cloud' (to SSH and user-data, as
    a tenant's server). progress, if given, is called with a line of text
    at each step. Raises BenchFailed, with the harness's account of the
    failure, if the cloud or any server failed.
    """
    if runs < 1:
        raise ValueError('runs must be at least 1, not %d' % runs)
    if guest not in GUESTS:
        raise ValueError('guest must be one of %s, not %r'
                         % (', '.join(sorted(GUESTS)), guest))
    # Nova's harness parses the process's configuration itself, as in a
    # test runner, where nothing has parsed it yet: oslo.config refuses to
    # register command line options once it has parsed (as the command
    # line's main() did). clear() drops only what was parsed.
    cfg.CONF.clear()
    case, measures, ratio_measure = GUESTS[guest]
    measurement = Measurement(runs, progress, measures, ratio_measure)
    measurement.say("starting Nova's services")
    result = unittest.TestResult()
    # The harness captures the test's log, but its last cleanups log after
    # the capture ended, and it leaves the root logger at DEBUG: this
    # capture keeps that from the caller's log and restores its logging.
    with fixtures.FakeLogger(level=logging.WARNING) as stray:
        # A suite, not the case alone: the suite runs the class fixtures
        # (setUpClass builds or finds the test guest).
        unittest.TestSuite([case(measurement=measurement)]).run(result)
    problems = [text for _test, text in result.errors + result.failures]
    problems += ['skipped: %s' % reason for _test, reason in result.skipped]
    if problems or result.testsRun != 1:
        if stray.output.strip():
            problems.append('Logged outside the test:\n' + stray.output)
        raise BenchFailed('bench nova failed:\n%s'
                          % '\n'.join(problems or ['the case did not run']))
    return measurement.result()


#: What each guest's benchmark runs and measures.
GUESTS = {
    'tiny': (NovaBenchCase, MEASURES, 'ready_s'),
    'cloud': (CloudNovaBenchCase, CLOUD_MEASURES, 'ssh_s'),
}


def summary(result):
    """A few lines for a person: the medians and how servers spawned."""
    modes = {}
    for s in result['spawns']:
        modes.setdefault(s['flavor'], set()).add(s['mode'])
    flavor = result['flavor']
    rows = [('', 'substrate', 'normal', 'normal/substrate')]
    measures = [('active_s', 'POST to ACTIVE', 'active_ratio'),
                ('ready_s', 'POST to guest-ready', 'ratio'),
                ('ssh_s', 'POST to SSH login', 'ratio'),
                ('userdata_s', 'POST to user-data run', 'userdata_ratio')]
    for measure, what, ratio in measures:
        if 'substrate_' + measure not in result:
            continue
        rows.append((what,
                     '%.3f s' % result['%s_%s' % (SUBSTRATE, measure)],
                     '%.3f s' % result['%s_%s' % (NORMAL, measure)],
                     '%.2fx' % result[ratio]))
    rows.append(('spawned as', '/'.join(sorted(modes[SUBSTRATE])),
                 '/'.join(sorted(modes[NORMAL])), ''))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ['%s guest, %d MiB, %d vCPU(s); medians of %d run(s)' % (
        result['guest'], flavor['memory_mb'], flavor['vcpus'],
        result['run_count'])]
    for r in rows:
        lines.append('  '.join([r[0].ljust(widths[0])] +
                               [c.rjust(w) for c, w in zip(r[1:],
                                                           widths[1:])])
                     .rstrip())
    return '\n'.join(lines)
