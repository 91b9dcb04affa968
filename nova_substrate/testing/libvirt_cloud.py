"""Nova's own in-process services around a real libvirt compute driver.

The API, conductor, scheduler, placement (PlacementFixture) and one
nova-compute run in the test process, from Nova's functional harness
(``_IntegratedTestBase``). The compute loads ``COMPUTE_DRIVER`` (by default
the stock ``libvirt.LibvirtDriver``) and drives the host's real libvirtd
(qemu:///system, TCG): servers are real guests of the project's tiny test
guest image, served by the harness's GlanceFixture.

Nova's harness keeps its tests away from a real hypervisor on purpose.
This base lifts exactly those guards, each named in
``_use_real_hypervisor()``, and keeps the rest of the harness as it is.

The tests need root and a running libvirtd (tools/setup-host.sh starts
it).
"""

import fcntl
import glob
import os
import shutil
import sys
import tempfile
import time
import uuid

import fixtures
# Imported before Nova's harness installs its ImportModulePoisonFixture,
# which only refuses modules that are not imported yet.
import libvirt
import psutil
from sqlalchemy import exc as sqla_exc

from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client as api_client
from nova.tests.functional import integrated_helpers
from nova.virt.libvirt import host as libvirt_host

from nova_substrate import conf as substrate_conf
from nova_substrate import guests

LIBVIRT_URI = 'qemu:///system'
# QEMU runs as libvirt-qemu and must reach the instance files: a tree of
# 0755 directories on a disk filesystem (O_DIRECT for cache mode none),
# not a 0700 temporary directory.
WORK_ROOT = os.environ.get('NOVA_SUBSTRATE_FUNCTIONAL_WORK',
                           '/var/tmp/nova-substrate-functional')
INSTANCES_PATH_PREFIX = 'instances-'
INSTANCE_NAME_PREFIX = 'instance-'
# What the tiny test guest prints on its console once it has booted.
GUEST_READY_LINE = 'nova-substrate-guest: ready'
# The substrate engine's build domains, which run under their own names.
BUILD_DOMAIN_PREFIX = 'substrate-'

# Guests run under TCG: a boot takes seconds, not the harness's 5 s budget.
ACTIVE_TIMEOUT = 60.0
CONSOLE_TIMEOUT = 60.0
DELETE_TIMEOUT = 60.0
POLL_INTERVAL = 0.2

# Taken before any test runs, so before the harness poisons them.
_REAL_UNAME = os.uname
_REAL_NET_IF_ADDRS = psutil.net_if_addrs
_REAL_OPEN = open
_REAL_ISDIR = os.path.isdir
_REAL_LISTDIR = os.listdir
_REAL_GLOB = glob.glob
_REAL_IGLOB = glob.iglob


class RealLibvirtTestCase(integrated_helpers._IntegratedTestBase):
    """Nova services with a real libvirt compute booting real TCG guests.

    Each test gets its own instances_path, a flavor sized for the tiny
    guest and three images (kernel, ramdisk and disk) of it; its domains
    are destroyed and undefined at cleanup whatever the test did.
    """

    #: Loaded by Nova as 'nova.virt.' + COMPUTE_DRIVER.
    COMPUTE_DRIVER = 'libvirt.LibvirtDriver'
    #: The test guest the images hold (nova_substrate.guests).
    GUEST = 'tiny'
    FLAVOR_MEMORY_MB = 512
    FLAVOR_VCPUS = 1
    FLAVOR_ROOT_GB = 1

    # networks='none' needs 2.37; later microversions are what a current
    # client sends.
    microversion = 'latest'
    # CAST_AS_CALL stays True, the harness's default. With real casts, a
    # test that ends while the conductor waits for the scheduler hangs in
    # cleanup: the scheduler stops first, and stopping the conductor
    # waits for a call that waits [DEFAULT] long_rpc_timeout (30 min).

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Built once per cache (a few seconds), then found in the cache.
        cls.guest = guests.get_guest(
            cls.GUEST,
            cache_dir=substrate_conf.CONF.substrate_bench.guest_cache_dir)

    def setUp(self):
        # Registered before the harness's own cleanups, so they run after
        # the compute service has stopped: nothing recreates a domain
        # behind them, and the domains go before their files. They get
        # what they need as arguments: the harness deletes the test's
        # public attributes before they run.
        self.conn = libvirt.open(LIBVIRT_URI)
        self.addCleanup(self.conn.close)
        sweep_abandoned_instances_paths(self.conn)
        self.instances_path, lock_fd = claim_instances_path()
        self.addCleanup(os.close, lock_fd)
        self.addCleanup(shutil.rmtree, self.instances_path,
                        ignore_errors=True)
        self.addCleanup(destroy_domains_under, self.conn,
                        self.instances_path)
        # Known before the services start, so options can name the image.
        self.disk_image_id = str(uuid.uuid4())

        super().setUp()

        self._keep_uploaded_image_data()
        self.flavor_id = self._create_flavor(
            memory_mb=self.FLAVOR_MEMORY_MB, vcpu=self.FLAVOR_VCPUS,
            disk=self.FLAVOR_ROOT_GB, ephemeral=0, swap=0)
        self.image_id = self._register_guest_images()

    # Hooks of _IntegratedTestBase.setUp: the harness's fixtures are in
    # place when they run, and no service has started yet.

    def _setup_services(self):
        self._use_real_hypervisor()
        self._configure_compute()
        super()._setup_services()

    def _use_real_hypervisor(self):
        """Lift the harness's guards against touching the real host.

        Each guard is nova.test.TestCase's; every other fixture of the
        harness stays.
        """
        # PoisonFunctions turns Host._init_events into sys.exit. The real
        # one starts a libvirt event loop thread that never stops (one
        # more per test) and a connection-event thread in the per-test
        # executor, whose cleanup then waits for it forever. Without
        # events the driver still works: spawn polls the domain until it
        # runs ("does not support events" in the log says so), and power
        # states are synced only when a test runs _sync_power_states.
        self.useFixture(fixtures.MockPatchObject(
            libvirt_host.Host, '_init_events', lambda host: None))
        # The host's libvirtd is shared with tests running beside this
        # one (other functional tests, the engine's integration tests).
        # The compute sees only the domains with files under its own
        # instances_path, as if it had the hypervisor to itself: a new
        # compute otherwise refuses to start next to "existing
        # instances", and would count and sync the others' guests.
        real_list = libvirt_host.Host.list_instance_domains
        instances_path = self.instances_path

        def own_domains(host, only_running=True):
            return [d for d in real_list(host, only_running=only_running)
                    if _has_files_under(d, instances_path)]
        self.useFixture(fixtures.MockPatchObject(
            libvirt_host.Host, 'list_instance_domains', own_domains))
        # GenericPoisonFixture: the driver reads the host's architecture
        # (os.uname) and checks [DEFAULT] my_ip against the host's
        # interfaces (psutil.net_if_addrs) at init_host.
        self.useFixture(fixtures.MonkeyPatch('os.uname', _REAL_UNAME))
        self.useFixture(fixtures.MonkeyPatch('psutil.net_if_addrs',
                                             _REAL_NET_IF_ADDRS))
        # SysFsPoisonFixture: the driver reads the host's /sys where the
        # host has it: the AMD SEV probe once kvm_amd is loaded, cgroup
        # controllers, CPU power management, mediated devices.
        self.useFixture(fixtures.MonkeyPatch('builtins.open', _REAL_OPEN))
        self.useFixture(fixtures.MonkeyPatch('os.path.isdir', _REAL_ISDIR))
        self.useFixture(fixtures.MonkeyPatch('os.listdir', _REAL_LISTDIR))
        self.useFixture(fixtures.MonkeyPatch('glob.glob', _REAL_GLOB))
        self.useFixture(fixtures.MonkeyPatch('glob.iglob', _REAL_IGLOB))
        # PrivsepNoHelperFixture stays, so a privsep daemon is never
        # started; PrivsepFixture runs privileged calls (the image
        # backend's utime, chown) in this process, which runs as root.
        self.useFixture(nova_fixtures.PrivsepFixture())
        # WarningsFixture turns SQLAlchemy deprecations raised from nova
        # into errors. Nova 34's instance queries still use noload(),
        # deprecated in SQLAlchemy 2.1; the compute's power-state sync
        # (_sync_power_states, lifecycle events) reaches it and its error
        # is logged and swallowed, so the sync silently does nothing.
        self.useFixture(fixtures.WarningsFilter([
            {'action': 'ignore', 'message': 'The noload',
             'category': sqla_exc.SADeprecationWarning}]))

    def _configure_compute(self):
        """Set the compute's options; runs before any service starts.

        Subclasses extend it (calling it first) with their own options.
        """
        self.flags(compute_driver=self.COMPUTE_DRIVER,
                   instances_path=self.instances_path,
                   # Each test's database counts instance ids from 1 again:
                   # names from the uuid cannot collide with another
                   # test's domains on the same libvirtd.
                   instance_name_template=INSTANCE_NAME_PREFIX + '%(uuid)s')
        self.flags(virt_type='qemu', cpu_mode='none',
                   connection_uri=LIBVIRT_URI,
                   hw_machine_type=['x86_64=q35'],
                   group='libvirt')
        # The harness looks for api-paste.ini under its state_path; pip
        # installs it under the environment's prefix.
        self.flags(api_paste_config=_api_paste_config(), group='wsgi')

    # Images and servers.

    def _keep_uploaded_image_data(self):
        """Make the harness's image service keep what is uploaded to it.

        GlanceFixture drops the data of an image update, which is how a
        snapshot's disk reaches Glance; a real Glance keeps it, and
        unshelving boots from it.
        """
        glance = self.glance
        real_update = glance.update

        def update(context, image_id, metadata, data=None,
                   purge_props=False):
            image = real_update(context, image_id, metadata, data=None,
                                purge_props=purge_props)
            if data is not None:
                content = data.read() if hasattr(data, 'read') else data
                if not isinstance(content, bytes):
                    content = b''.join(content)
                glance._imagedata[image_id] = content
                image['size'] = len(content)
                image['status'] = 'active'
            return image
        # Nova's image API looks the method up on the fixture per call.
        glance.update = update

    def image_data(self, image_id):
        return self.glance._imagedata.get(image_id, b'')

    def _register_guest_images(self, properties=None):
        """The guest's image(s) in Glance; the disk image's id.

        A guest that boots from its own disk (its own boot loader and
        kernel, as images operators upload do) is one image. Otherwise it
        is an AMI-style set: the disk image names the kernel and ramdisk
        images, so Nova's libvirt driver boots the kernel directly with
        the guest's command line. GlanceFixture keeps each image's bytes
        and serves them as Glance would. properties are the disk image's
        (default: the guest agent and the architecture).
        """
        if properties is None:
            # The guest starts its agent once the agent's channel shows
            # up; the substrate driver needs it.
            properties = {'hw_qemu_guest_agent': 'yes',
                          'architecture': 'x86_64'}
        if self.guest.kernel is None:
            return self._create_glance_image(
                'disk', self.guest.disk, 'qcow2', 'bare', dict(properties),
                image_id=self.disk_image_id)['id']
        kernel = self._create_glance_image(
            'kernel', self.guest.kernel, 'aki', 'aki', {})
        ramdisk = self._create_glance_image(
            'ramdisk', self.guest.initrd, 'ari', 'ari', {})
        disk = self._create_glance_image(
            'disk', self.guest.disk, 'qcow2', 'bare',
            dict(properties, kernel_id=kernel['id'],
                 ramdisk_id=ramdisk['id'],
                 os_command_line=self.guest.cmdline),
            image_id=self.disk_image_id)
        return disk['id']

    def _create_glance_image(self, part, path, disk_format,
                             container_format, properties, image_id=None):
        metadata = {
            'id': image_id or str(uuid.uuid4()),
            'name': '%s-%s-%s' % (self.guest.name, self.guest.digest[:12],
                                  part),
            'status': 'active',
            'visibility': 'public',
            'disk_format': disk_format,
            'container_format': container_format,
            'size': os.path.getsize(path),
            'min_ram': 0,
            'min_disk': 0,
            'properties': properties,
        }
        with open(path, 'rb') as data:
            return self.glance.create(None, metadata, data=data)

    def boot_server(self, name=None, image_id=None, flavor_id=None,
                    networks='none'):
        """POST /servers with the guest image (no network by default)."""
        body = self._build_server(name=name,
                                  image_uuid=image_id or self.image_id,
                                  flavor_id=flavor_id or self.flavor_id,
                                  networks=networks)
        return self.api.post_server({'server': body})

    def wait_for_active(self, server, timeout=ACTIVE_TIMEOUT):
        """The server once ACTIVE; fails at once if it goes to ERROR."""
        def active():
            current = self.api.get_server(server['id'])
            if current['status'] == 'ERROR':
                self.fail('server %s went to ERROR: %s'
                          % (server['id'], current.get('fault')))
            return current if current['status'] == 'ACTIVE' else None
        return self._wait_for(active, timeout,
                              'server %s to become ACTIVE' % server['id'])

    def wait_for_status(self, server, status, timeout=ACTIVE_TIMEOUT,
                        task_state=None):
        """The server once its status is status and no task runs on it."""
        def reached():
            current = self.api.get_server(server['id'])
            if current['status'] == 'ERROR' and status != 'ERROR':
                self.fail('server %s went to ERROR: %s'
                          % (server['id'], current.get('fault')))
            return current if (
                current['status'] == status and
                current.get('OS-EXT-STS:task_state') == task_state) else None
        return self._wait_for(reached, timeout, 'server %s to be %s'
                              % (server['id'], status))

    def server_action(self, server, action, body=None, status='ACTIVE',
                      timeout=ACTIVE_TIMEOUT):
        """POST a server action and wait for the status it leads to."""
        self.api.post_server_action(server['id'], {action: body})
        return self.wait_for_status(server, status, timeout)

    def delete_server(self, server, timeout=DELETE_TIMEOUT):
        """DELETE the server and wait until the API no longer knows it."""
        self.api.delete_server(server['id'])

        def gone():
            try:
                current = self.api.get_server(server['id'])
            except api_client.OpenStackApiNotFoundException:
                return True
            if current['status'] == 'ERROR':
                self.fail('server %s went to ERROR while deleted: %s'
                          % (server['id'], current.get('fault')))
            return False
        self._wait_for(gone, timeout,
                       'server %s to be deleted' % server['id'])

    # The hypervisor's view.

    def domain_of(self, server):
        """The server's libvirt domain, looked up by its uuid."""
        return self.conn.lookupByUUIDString(server['id'])

    def instance_dir(self, server):
        """Where the driver keeps the server's files (disk, console log)."""
        return os.path.join(self.instances_path, server['id'])

    def guest_console(self, server):
        """What the guest wrote to its serial console so far."""
        path = os.path.join(self.instance_dir(server), 'console.log')
        try:
            with open(path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def wait_for_console(self, server, text, timeout=CONSOLE_TIMEOUT):
        """The console log once it contains text."""
        def seen():
            console = self.guest_console(server)
            return console if text in console else None
        return self._wait_for(
            seen, timeout,
            '%r on the console of server %s' % (text, server['id']))

    def _wait_for(self, probe, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() >= deadline:
                self.fail('timed out after %.0f s waiting for %s'
                          % (timeout, what))
            time.sleep(POLL_INTERVAL)


def _api_paste_config():
    return os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')


def _make_work_root():
    os.makedirs(WORK_ROOT, 0o755, exist_ok=True)
    os.chmod(WORK_ROOT, 0o755)


def claim_instances_path():
    """A new instances_path and the fd of the lock held on it.

    The lock tells sweep_abandoned_instances_paths() that the directory's
    test is alive; it goes with the fd, or with the process.
    """
    _make_work_root()
    # Made under a name the sweep ignores and renamed once locked, so a
    # sweep never takes a directory still being set up.
    new_path = tempfile.mkdtemp(prefix='.new-', dir=WORK_ROOT)
    os.chmod(new_path, 0o755)
    fd = os.open(new_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = os.path.join(WORK_ROOT, INSTANCES_PATH_PREFIX +
                        os.path.basename(new_path)[len('.new-'):])
    os.rename(new_path, path)
    return path, fd


def sweep_abandoned_instances_paths(conn):
    """Remove what killed test processes left: their domains and files.

    A test run interrupted hard (SIGKILL, a lost terminal) runs no
    cleanup, and its TCG guests would go on using the host's CPUs.
    """
    _make_work_root()
    for name in os.listdir(WORK_ROOT):
        if not name.startswith(INSTANCES_PATH_PREFIX):
            continue
        path = os.path.join(WORK_ROOT, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live test's
            destroy_domains_under(conn, path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _has_files_under(domain, instances_path):
    try:
        return (instances_path.rstrip(os.sep) + os.sep) in domain.XMLDesc(0)
    except libvirt.libvirtError:
        return False     # gone meanwhile


def destroy_domains_under(conn, instances_path):
    """Destroy and undefine the instance-* domains with files in a path.

    Those are the domains of the compute using that instances_path;
    domains of tests running beside it are left alone.
    """
    for domain in conn.listAllDomains():
        try:
            if (not domain.name().startswith((INSTANCE_NAME_PREFIX,
                                              BUILD_DOMAIN_PREFIX)) or
                    not _has_files_under(domain, instances_path)):
                continue
            if domain.isActive():
                domain.destroy()
            if domain.isPersistent():
                domain.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError as e:
            # Gone meanwhile (a transient domain disappears once
            # destroyed) is what cleanup wants.
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
