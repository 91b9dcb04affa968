"""bench activation: boot versus activation of the same guest and size.

Measured side by side in one run, on a pool of the benchmark's own (so
the host's pool is left alone):

- boot_s: a normal boot of the guest at the target size, until its hook
  says the boot finished;
- libvirt_floor_s: libvirt starting the clone's domain paused, nothing
  else: no libvirt-based activation can go under it;
- running_s / activate_s: activation start until the clone runs / until
  it confirmed its new identity;
- concurrent_s: K clones activated at once, until all confirmed.

For a guest with cloud-init (cloud), each boot and each measured
activation is also an instance as a tenant sees it: its own uuid,
hostname, MAC and static address on a network of the benchmark's own (a
TestNetwork: a bridge, and a namespace holding the gateway from which
SSH runs), and instance data in the config drive's layout (metadata
with the tenant's public key, network_data.json, #cloud-config user data
whose runcmd writes a marker). A boot reads it from a config drive ISO
(made with genisoimage, as Nova makes it); an activation hands it over
(CloneSpec.instance_data). Both are timed from their start (domain
created; activate_clone called) until:

- boot_ssh_s / activate_ssh_s: an SSH login as the image's default user
  with the tenant's key succeeds;
- boot_userdata_s / activate_userdata_s: the user data's runcmd has
  written its marker;

medians, with ssh_ratio and userdata_ratio (boot over activation) and the
lists of each run (boot_ssh_runs_s, ...). Guests without cloud-init have
none of these fields.
"""

import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import activate
from nova_substrate.engine import build
from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import keys
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import qemuimg
from nova_substrate.engine import saveimage
from nova_substrate import guests
from nova_substrate.guests import configdrive
from nova_substrate.guests import domain as guest_domain

LOG = logging.getLogger(__name__)


#: Test guests whose cloud-init takes instance data: their instances are
#: also timed to an SSH login and to the end of their user data.
CLOUD_INIT_GUESTS = ('cloud',)
#: (memory MiB, vCPUs) a guest is benchmarked at unless told otherwise.
#: The cloud guest's first boot (cloud-init) needs its 512 MiB; it is
#: measured with one vCPU.
DEFAULT_SIZE = (512, 2)
GUEST_SIZES = {'cloud': (512, 1)}

#: The benchmark's own network: the gateway sits in the TestNetwork's
#: namespace; instances get the subnet's other addresses, each its own.
GATEWAY_CIDR = '192.168.231.1/24'
#: The image's default user, whom cloud-init gives the tenant's key.
CLOUD_USER = 'debian'
#: What the user data's runcmd writes: the instance's uuid.
USERDATA_MARKER = '/var/tmp/nova-substrate-bench-userdata'
# From the start of a boot / an activation: TCG boots the cloud guest in
# about 70 s, activates it in 10-20 s.
BOOT_SSH_TIMEOUT_S = 400.0
ACTIVATE_SSH_TIMEOUT_S = 120.0
# A substrate build of the cloud guest is its first boot, then a save.
CLOUD_BUILD_TIMEOUT_S = 600.0
# Until the guest's SSH port answers, a watcher in the namespace tries to
# connect every PROBE_INTERVAL_S, each try bounded by PORT_TRY_S; ssh
# logins are tried only then, one at a time, as a tenant would: a swarm
# of handshakes would cost the emulated guest the time it measures.
PROBE_INTERVAL_S = 0.1
PORT_TRY_S = 0.5
# Between logins refused (the key not there yet, sshd reloading).
LOGIN_RETRY_S = 0.2
# Connects to ADDRESS:22 until it answers with an SSH banner.
PORT_WATCHER = """
import socket, sys, time
while True:
    try:
        with socket.create_connection((sys.argv[1], 22), %(try_s)s) as s:
            s.settimeout(%(banner_s)s)
            if s.recv(4).startswith(b'SSH-'):
                break
    except OSError:
        pass
    time.sleep(%(interval_s)s)
"""
# ssh's ConnectTimeout also bounds the banner exchange, which a guest
# starved of CPU under TCG can take seconds over.
PROBE_CONNECT_TIMEOUT_S = 10
SESSION_CONNECT_TIMEOUT_S = 30
POLL_S = 0.05


def _median(values):
    return round(statistics.median(values), 4)


def guest_size(guest_name):
    """(memory MiB, vCPUs) the guest is benchmarked at by default."""
    return GUEST_SIZES.get(guest_name, DEFAULT_SIZE)


def instance_addresses(gateway_cidr):
    """The subnet's addresses but the gateway's, in order, as CIDRs."""
    gateway = ipaddress.ip_interface(gateway_cidr)
    for host in gateway.network.hosts():
        if host != gateway.ip:
            yield '%s/%d' % (host, gateway.network.prefixlen)


def user_data(instance_uuid, marker=USERDATA_MARKER):
    """#cloud-config whose runcmd writes instance_uuid to marker, whole."""
    script = 'echo %s > %s.tmp && mv %s.tmp %s' % (
        instance_uuid, marker, marker, marker)
    return '#cloud-config\nruncmd:\n  - [sh, -c, %s]\n' % json.dumps(script)


def config_drive_files(instance_uuid, hostname, mac, address_cidr,
                       public_key, user_data_text):
    """An instance's data in an OpenStack config drive's layout.

    Relative path to bytes, as Nova writes them: meta_data.json (uuid,
    hostname, the tenant's key), network_data.json (one NIC, named by
    its MAC, with a static IPv4 address), user_data.
    """
    interface = ipaddress.ip_interface(address_cidr)
    meta_data = {
        'uuid': instance_uuid, 'name': hostname, 'hostname': hostname,
        'launch_index': 0, 'availability_zone': 'nova',
        'project_id': 'bench',
        'public_keys': {'bench': public_key},
        'keys': [{'name': 'bench', 'type': 'ssh', 'data': public_key}],
    }
    network_data = {
        'links': [{'id': 'tap0', 'type': 'phy', 'mtu': 1500,
                   'ethernet_mac_address': mac.lower(),
                   'vif_id': instance_uuid}],
        'networks': [{'id': 'network0', 'type': 'ipv4', 'link': 'tap0',
                      'ip_address': str(interface.ip),
                      'netmask': str(interface.netmask),
                      'routes': [], 'network_id': 'bench'}],
        'services': [],
    }
    latest = 'openstack/latest/'
    return {
        latest + 'meta_data.json': json.dumps(meta_data).encode(),
        latest + 'network_data.json': json.dumps(network_data).encode(),
        latest + 'user_data': user_data_text.encode(),
    }


class _Stopped(Exception):
    """The probe was told to stop."""


class LoginProbe(threading.Thread):
    """Times from t0 until a tenant's SSH login works, then its user data.

    Runs beside the boot or activation it times; ssh runs in the
    TestNetwork's namespace with the tenant's key. ssh_s and userdata_s
    are seconds from t0, error what stopped the probe.
    """

    def __init__(self, net, address, marker_value, t0, timeout,
                 user=CLOUD_USER, marker=USERDATA_MARKER):
        super().__init__(daemon=True, name='login-probe-%s' % address)
        self.net, self.address, self.user = net, address, user
        self.marker, self.marker_value = marker, marker_value
        self.t0, self.deadline = t0, t0 + timeout
        self.timeout = timeout
        self.ssh_s = self.userdata_s = self.error = None
        # When the guest's SSH port first answered, from t0.
        self.port_s = None
        self.last_error = ''
        self._halt = threading.Event()

    def run(self):
        try:
            self.ssh_s = self._first_login()
            self.userdata_s = self._user_data_done()
        except _Stopped:
            pass
        except BaseException as e:  # handed to the caller by result()
            self.error = e

    def stop(self):
        self._halt.set()
        self.join()

    def result(self):
        """(ssh_s, userdata_s), once both are in; raises what failed."""
        while self.is_alive():
            self.join(1.0)
        if self.error is not None:
            raise self.error
        if self.userdata_s is None:
            raise exception.SubstrateError('login probe of %s stopped'
                                           % self.address)
        return self.ssh_s, self.userdata_s

    def _ssh(self, command, connect_timeout):
        argv = ['ip', 'netns', 'exec', self.net.namespace, 'ssh',
                *ssh_options(connect_timeout), '-i', self.net.private_key,
                '%s@%s' % (self.user, self.address), command]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def _check(self, what):
        if self._halt.is_set():
            raise _Stopped()
        if time.monotonic() >= self.deadline:
            raise exception.SubstrateError(
                '%s as %s@%s not done within %.0f s: %s'
                % (what, self.user, self.address, self.timeout,
                   self.last_error or 'no answer'))

    def _finished(self, proc):
        """Reap proc (killed if still running), keeping what it said."""
        self.last_error = _reap(proc) or self.last_error

    def _wait(self, proc, what):
        """Wait for proc, within the deadline; whether it exited 0."""
        try:
            while proc.poll() is None:
                self._check(what)
                time.sleep(POLL_S)
        finally:
            self._finished(proc)
        return proc.returncode == 0

    def _until_done(self, command, connect_timeout, what):
        """Seconds from t0 until ssh command first exits 0, retried."""
        while not self._wait(self._ssh(command, connect_timeout), what):
            LOG.debug('%s of %s not done yet: %s', what, self.address,
                      self.last_error)
            self._check(what)
            time.sleep(LOGIN_RETRY_S)
        return time.monotonic() - self.t0

    def _first_login(self):
        watcher = subprocess.Popen(
            ['ip', 'netns', 'exec', self.net.namespace, sys.executable,
             '-c', PORT_WATCHER % {'try_s': PORT_TRY_S,
                                   'banner_s': PROBE_CONNECT_TIMEOUT_S,
                                   'interval_s': PROBE_INTERVAL_S},
             self.address],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        if not self._wait(watcher, 'SSH port'):
            raise exception.SubstrateError(
                'watching the SSH port of %s failed: %s'
                % (self.address, self.last_error))
        self.port_s = time.monotonic() - self.t0
        return self._until_done('true', PROBE_CONNECT_TIMEOUT_S, 'SSH login')

    def _user_data_done(self):
        # One session waits in the guest, so the time is the marker's,
        # not that of a poll's SSH login.
        command = 'until grep -qxF %s %s 2>/dev/null; do sleep 0.1; done' % (
            shlex.quote(self.marker_value), shlex.quote(self.marker))
        return self._until_done(command, SESSION_CONNECT_TIMEOUT_S,
                                'user data')


def ssh_options(connect_timeout):
    """The TestNetwork's ssh options, with connect_timeout (seconds)."""
    from nova_substrate.testing import testnet
    options = []
    for option in testnet.SSH_OPTIONS:
        if option.startswith('ConnectTimeout='):
            option = 'ConnectTimeout=%d' % connect_timeout
        options.append(option)
    return options


def _reap(proc):
    """Kill proc if it still runs; its stderr, stripped, once exited."""
    if proc.poll() is None:
        proc.kill()
    try:
        return (proc.communicate()[1] or '').strip()
    except ValueError:  # reaped before: its pipe is closed
        return ''


class ActivationBench(object):

    def __init__(self, conn, settings, guest_name, work_path, memory_mb=None,
                 vcpus=None, runs=5, clones=8, progress=None,
                 guest_cache_dir=None):
        self.conn = conn
        default_memory_mb, default_vcpus = guest_size(guest_name)
        self.memory_mb = memory_mb or default_memory_mb
        self.vcpus = vcpus or default_vcpus
        self.runs = runs
        self.clones = clones
        self.say = progress or (lambda msg: None)
        self.cloud_init = guest_name in CLOUD_INIT_GUESTS
        if self.cloud_init:
            # Its first boot (cloud-init, host keys) and its activation
            # (cloud-init's stages against the instance's data) take far
            # longer under TCG than the hook-only guests'.
            settings = dataclasses.replace(
                settings,
                build_timeout=max(settings.build_timeout,
                                  CLOUD_BUILD_TIMEOUT_S),
                activate_timeout=max(settings.activate_timeout,
                                     ACTIVATE_SSH_TIMEOUT_S))
        self.settings = settings
        self.net = None
        self._addresses = instance_addresses(GATEWAY_CIDR)
        self.pool = None
        self.work = None
        self.guest = guests.get_guest(guest_name, cache_dir=guest_cache_dir,
                                      progress=self.say)
        os.makedirs(work_path, mode=0o755, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix='activation-', dir=work_path)
        # QEMU runs as libvirt-qemu and writes console logs here.
        os.chmod(self.work, 0o755)
        self.pool = pool_mod.SubstratePool(
            tempfile.mkdtemp(prefix='nova-substrate-bench-',
                             dir='/dev/shm'),
            os.path.join(self.work, 'layers'), 0)

    def close(self):
        try:
            if self.work is not None:
                self._destroy_own_domains()
            if self.pool is not None:
                for t in self.pool.templates():
                    self.pool.remove(t.key)
                self.pool.collect_layers(lambda u: False)
                shutil.rmtree(self.pool.path, ignore_errors=True)
            if self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            self._stop_network()

    def _destroy_own_domains(self):
        """Destroy what an interruption left running: boots, clones, build.

        Each of the benchmark's domains (the substrate build's too) has
        its disk or console log in the benchmark's own work directory.
        """
        own = self.work + os.sep
        for dom in self.conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):
                if own in dom.XMLDesc(0):
                    activate.destroy_domain(dom)

    def _start_network(self):
        # Imported here: the testing package loads Nova, which the other
        # guests' benchmarks do not need.
        from nova_substrate.testing import testnet
        net = testnet.TestNetwork(GATEWAY_CIDR)
        # setUp takes down what it made if it fails.
        net.setUp()
        self.net = net

    def _stop_network(self):
        net, self.net = self.net, None
        if net is not None:
            net.cleanUp()

    def _path(self, name):
        return os.path.join(self.work, name)

    def _name(self, prefix):
        return '%s-%s' % (prefix, uuid.uuid4().hex[:8])

    def _instance_xml(self, name, nics=(), devices=(), domain_uuid=None):
        disk = self._path(name + '.qcow2')
        qemuimg.create_overlay(disk, self.guest.disk, 'qcow2')
        return guest_domain.instance_xml(
            self.guest, name, domain_uuid or str(uuid.uuid4()),
            self.memory_mb, self.vcpus, disk, self._path(name + '.log'),
            nics, devices=devices)

    def measure_boot(self):
        nic = domainxml.interface_xml(domainxml.random_mac())
        name = self._name('bench-boot')
        xml = self._instance_xml(name, [nic])
        t0 = time.monotonic()
        dom = self.conn.createXML(xml, 0)
        try:
            deadline = t0 + self.settings.build_timeout
            guest_agent.GuestAgent(dom).wait_booted(self.settings.hook_path,
                                                    deadline)
            return time.monotonic() - t0
        finally:
            activate.destroy_domain(dom)
            os.unlink(self._path(name + '.qcow2'))

    def tenant_instance(self, name):
        """(uuid, hostname, MAC, address, instance data) of a new instance."""
        instance_uuid = str(uuid.uuid4())
        hostname = name
        mac = domainxml.random_mac()
        try:
            address = next(self._addresses)
        except StopIteration:
            raise exception.SubstrateError(
                'the benchmark network %s has no address left' % GATEWAY_CIDR)
        files = config_drive_files(instance_uuid, hostname, mac, address,
                                   self.net.public_key,
                                   user_data(instance_uuid))
        return instance_uuid, hostname, mac, address.split('/')[0], files

    def _bridge_nic(self, mac):
        return domainxml.interface_xml(mac, kind='bridge',
                                       source=self.net.bridge)

    def measure_cloud_boot(self):
        """A boot with a config drive, timed to ready, SSH and user data.

        Returns (boot_s, ssh_s, userdata_s), each from the domain's
        creation.
        """
        name = self._name('bench-boot')
        instance_uuid, _, mac, address, files = self.tenant_instance(name)
        iso = self._path(name + '.iso')
        disk = self._path(name + '.qcow2')
        dom = probe = None
        try:
            configdrive.make_config_drive(files, iso, self.work)
            xml = self._instance_xml(name, [self._bridge_nic(mac)],
                                     configdrive.config_drive_devices(iso),
                                     domain_uuid=instance_uuid)
            t0 = time.monotonic()
            dom = self.conn.createXML(xml, 0)
            probe = LoginProbe(self.net, address, instance_uuid, t0,
                               BOOT_SSH_TIMEOUT_S)
            probe.start()
            guest_agent.GuestAgent(dom).wait_booted(
                self.settings.hook_path, t0 + self.settings.build_timeout)
            boot_s = time.monotonic() - t0
            ssh_s, userdata_s = probe.result()
            return boot_s, ssh_s, userdata_s
        finally:
            if probe is not None:
                probe.stop()
            if dom is not None:
                activate.destroy_domain(dom)
            for path in (disk, iso):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def build(self):
        key = keys.substrate_key(self.guest.name, self.guest.digest,
                                 self.memory_mb, self.vcpus)
        # The build puts its own overlay (the future layer) on the disk
        # the XML names: the guest's image itself.
        name = self._name('bench-template')
        xml = guest_domain.instance_xml(
            self.guest, name, str(uuid.uuid4()), self.memory_mb,
            self.vcpus, self.guest.disk, self._path('template.log'))
        spec = build.BuildSpec(key=key, domain_xml=xml,
                               memory_mb=self.memory_mb, vcpus=self.vcpus,
                               labels={'guest': self.guest.name},
                               console_log=self._path('template.log'))
        return build.build_substrate(self.conn, self.pool, spec,
                                     self.settings, progress=self.say)

    def clone_spec(self, i):
        name = self._name('bench-clone')
        return activate.CloneSpec(
            name=name, uuid=str(uuid.uuid4()),
            overlay_path=self._path(name + '.qcow2'),
            vcpus=self.vcpus, memory_mb=self.memory_mb,
            hostname='clone-%d' % i, console_log=self._path(name + '.log'),
            nics=[domainxml.interface_xml(domainxml.random_mac())],
            metadata={'bench': True})

    def cloud_clone_spec(self):
        """A clone as a tenant's instance, with its config drive's data."""
        name = self._name('bench-clone')
        instance_uuid, hostname, mac, address, files = \
            self.tenant_instance(name)
        spec = activate.CloneSpec(
            name=name, uuid=instance_uuid,
            overlay_path=self._path(name + '.qcow2'),
            vcpus=self.vcpus, memory_mb=self.memory_mb,
            hostname=hostname, console_log=self._path(name + '.log'),
            nics=[self._bridge_nic(mac)], instance_data=files)
        return spec, address

    def measure_floor(self, template):
        header_xml = _template_xml(template)
        spec = self.clone_spec(0)
        qemuimg.create_overlay(spec.overlay_path, template.layer_path,
                               'qcow2')
        xml = domainxml.reidentify(header_xml, spec.name, spec.uuid,
                                   spec.overlay_path, spec.console_log)
        try:
            t0 = time.monotonic()
            dom = self.conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
            elapsed = time.monotonic() - t0
            activate.destroy_domain(dom)
            return elapsed
        finally:
            os.unlink(spec.overlay_path)

    def activate_one(self, template, i, settings=None):
        return activate.activate_clone(self.conn, self.pool, template.key,
                                       self.clone_spec(i),
                                       settings or self.settings,
                                       copy_if_empty=False)

    def activate_cloud(self, template):
        """An activation as a tenant's instance, timed to SSH and user data.

        Returns (clone timings, ssh_s, userdata_s), the latter two from
        the call of activate_clone.
        """
        spec, address = self.cloud_clone_spec()
        clone = None
        t0 = time.monotonic()
        probe = LoginProbe(self.net, address, spec.uuid, t0,
                           ACTIVATE_SSH_TIMEOUT_S)
        probe.start()
        try:
            clone = activate.activate_clone(self.conn, self.pool,
                                            template.key, spec,
                                            self.settings,
                                            copy_if_empty=False)
            ssh_s, userdata_s = probe.result()
            return clone.timings, ssh_s, userdata_s
        finally:
            probe.stop()
            if clone is not None:
                activate.destroy_clone(self.pool, clone)

    def run(self):
        if self.cloud_init:
            self._start_network()
        result = {'guest': self.guest.name, 'flavor_ram_mb': self.memory_mb,
                  'vcpus': self.vcpus, 'runs': self.runs,
                  'clones': self.clones}
        boots, boot_ssh, boot_userdata = [], [], []
        for i in range(self.runs):
            if self.cloud_init:
                boot_s, ssh_s, userdata_s = self.measure_cloud_boot()
                boots.append(boot_s)
                boot_ssh.append(ssh_s)
                boot_userdata.append(userdata_s)
                self.say('boot %d/%d: %.2f s (SSH %.2f s, user data %.2f s)'
                         % (i + 1, self.runs, boot_s, ssh_s, userdata_s))
            else:
                boots.append(self.measure_boot())
                self.say('boot %d/%d: %.2f s' % (i + 1, self.runs, boots[-1]))
        t0 = time.monotonic()
        template = self.build()
        result['build_s'] = round(time.monotonic() - t0, 2)
        result['substrate_bytes'] = os.stat(
            template.save_path).st_blocks * 512
        floors, readies, runnings, phases = [], [], [], []
        act_ssh, act_userdata = [], []
        for i in range(self.runs):
            floors.append(self.measure_floor(template))
            self.pool.fill(template.key, 1)
            if self.cloud_init:
                timings, ssh_s, userdata_s = self.activate_cloud(template)
                act_ssh.append(ssh_s)
                act_userdata.append(userdata_s)
            else:
                clone = self.activate_one(template, i)
                activate.destroy_clone(self.pool, clone)
                timings = clone.timings
            readies.append(timings['ready_s'])
            runnings.append(timings['running_s'])
            phases.append(timings)
            self.say('activation %d/%d: running %.3f s, ready %.3f s '
                     '(libvirt floor %.3f s)%s'
                     % (i + 1, self.runs, runnings[-1], readies[-1],
                        floors[-1],
                        ', SSH %.2f s, user data %.2f s'
                        % (act_ssh[-1], act_userdata[-1])
                        if self.cloud_init else ''))
        self.pool.fill(template.key, self.clones)
        # K activations share the host's CPUs, so each gets K times the
        # time one may take before it counts as failed.
        shared = dataclasses.replace(
            self.settings,
            activate_timeout=self.settings.activate_timeout * self.clones)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.clones) as ex:
            futures = [ex.submit(self.activate_one, template, i, shared)
                       for i in range(self.clones)]
            concurrent.futures.wait(futures)
        concurrent_s = time.monotonic() - t0
        for f in futures:
            if f.exception() is None:
                activate.destroy_clone(self.pool, f.result())
        for f in futures:
            if f.exception() is not None:
                raise f.exception()
        self.say('%d clones at once: %.3f s' % (self.clones, concurrent_s))
        result.update({
            'boot_s': _median(boots),
            'activate_s': _median(readies),
            'running_s': _median(runnings),
            'libvirt_floor_s': _median(floors),
            'concurrent_s': round(concurrent_s, 4),
            'boot_runs_s': _rounded(boots),
            'activate_runs_s': _rounded(readies),
            'running_runs_s': _rounded(runnings),
            'libvirt_floor_runs_s': _rounded(floors),
            # Where an activation's time goes: medians of the time from
            # activation start to the end of each phase.
            'activate_phases_s': {
                phase: _median([p[phase] for p in phases if phase in p])
                for phase in sorted(set().union(*phases))},
            'memory_verified': self.settings.verify_memory,
        })
        result['ratio'] = round(result['boot_s'] / result['activate_s'], 2)
        result['running_over_floor'] = round(
            result['running_s'] / result['libvirt_floor_s'], 2)
        result['concurrent_over_single'] = round(
            concurrent_s / result['activate_s'], 2)
        result['substrate_fraction_of_ram'] = round(
            result['substrate_bytes'] / (self.memory_mb * 2 ** 20), 3)
        if self.cloud_init:
            result.update(tenant_fields(boot_ssh, act_ssh, boot_userdata,
                                        act_userdata))
        return result


def _rounded(values):
    return [round(v, 4) for v in values]


def tenant_fields(boot_ssh, activate_ssh, boot_userdata, activate_userdata):
    """The result's SSH and user data fields from each run's times."""
    fields = {
        'boot_ssh_s': _median(boot_ssh),
        'activate_ssh_s': _median(activate_ssh),
        'boot_userdata_s': _median(boot_userdata),
        'activate_userdata_s': _median(activate_userdata),
        'boot_ssh_runs_s': _rounded(boot_ssh),
        'activate_ssh_runs_s': _rounded(activate_ssh),
        'boot_userdata_runs_s': _rounded(boot_userdata),
        'activate_userdata_runs_s': _rounded(activate_userdata),
    }
    fields['ssh_ratio'] = round(
        fields['boot_ssh_s'] / fields['activate_ssh_s'], 2)
    fields['userdata_ratio'] = round(
        fields['boot_userdata_s'] / fields['activate_userdata_s'], 2)
    return fields


def _template_xml(template):
    return saveimage.read_header(template.save_path).domain_xml


@contextlib.contextmanager
def activation_bench(*args, **kwargs):
    bench = ActivationBench(*args, **kwargs)
    try:
        yield bench
    finally:
        bench.close()
