"""Integration tests run against the host's real libvirtd and QEMU (TCG).

They need root and a running libvirtd (tools/run-tests.sh starts one).
Each test class builds what it needs in a pool and a work directory of
its own, and checks at the end that it left no domain behind.
"""

import os
import shutil
import tempfile
import time
import uuid

import libvirt
import testtools

from nova_substrate import conf as substrate_conf
from nova_substrate.engine import activate
from nova_substrate.engine import build
from nova_substrate.engine import connection
from nova_substrate.engine import domainxml
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import keys
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import settings as engine_settings
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain

URI = os.environ.get('NOVA_SUBSTRATE_LIBVIRT_URI', 'qemu:///system')
GUEST_CACHE = substrate_conf.CONF.substrate_bench.guest_cache_dir
# Work files live where QEMU (user libvirt-qemu) can reach them, on a
# filesystem with O_DIRECT (disk cache mode none), so not on tmpfs.
WORK_ROOT = os.environ.get('NOVA_SUBSTRATE_TEST_WORK',
                           '/var/tmp/nova-substrate-tests')
SETTINGS = engine_settings.EngineSettings(build_timeout=240.0,
                                          activate_timeout=20.0)


def connect():
    return connection.open_connection(URI)


random_mac = domainxml.random_mac


class LibvirtTestCase(testtools.TestCase):
    """A class-wide libvirt connection and work directory."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Class cleanups run even when setUpClass fails half-way.
        cls.conn = connect()
        cls.addClassCleanup(cls.conn.close)
        os.makedirs(WORK_ROOT, 0o755, exist_ok=True)
        cls.work = tempfile.mkdtemp(prefix='it-', dir=WORK_ROOT)
        cls.addClassCleanup(shutil.rmtree, cls.work, ignore_errors=True)
        os.chmod(cls.work, 0o755)

    @classmethod
    def start_domain(cls, xml, domain_uuid, console_log):
        """Start the class's guest; it is destroyed at class cleanup."""
        cls.domain_uuid = domain_uuid
        cls.console_log = console_log
        # Registered first: a domain that started must go, whatever
        # fails after.
        cls.addClassCleanup(cls.destroy_domain)
        cls.dom = cls.conn.createXML(xml, 0)

    @classmethod
    def destroy_domain(cls):
        try:
            dom = cls.conn.lookupByUUIDString(cls.domain_uuid)
        except libvirt.libvirtError:
            return
        activate.destroy_domain(dom)

    @classmethod
    def console_tail(cls):
        try:
            with open(cls.console_log, errors='replace') as f:
                return f.read()[-2000:]
        except FileNotFoundError:
            return ''

    @classmethod
    def wait_for_console(cls, line, deadline):
        """Wait until the class's guest printed line on its console."""
        while True:
            try:
                with open(cls.console_log, errors='replace') as f:
                    console = f.read()
            except FileNotFoundError:
                console = ''
            if line in console:
                return
            if not cls.dom.isActive():
                raise AssertionError('the guest stopped while booting:\n%s'
                                     % console[-2000:])
            if time.monotonic() >= deadline:
                raise AssertionError('no %r on the console in time:\n%s'
                                     % (line, console[-2000:]))
            time.sleep(0.2)

    def guest_run(self, dom, script):
        """Run a shell script in the guest; its stdout."""
        result = guest_agent.GuestAgent(dom).run(
            '/bin/sh', ['-c', script], deadline=time.monotonic() + 30)
        self.assertEqual(0, result.exitcode, result.stderr)
        return result.stdout.strip()


class SubstrateTestCase(LibvirtTestCase):
    """A class-wide pool holding one substrate of the tiny test guest."""

    GUEST = 'tiny'
    MEMORY_MB = 512
    VCPUS = 2

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        pool_path = tempfile.mkdtemp(prefix='nova-substrate-it-',
                                     dir='/dev/shm')
        cls.addClassCleanup(shutil.rmtree, pool_path, ignore_errors=True)
        cls.pool = pool_mod.SubstratePool(
            pool_path, os.path.join(cls.work, 'layers'), 0)
        cls.guest = guests.get_guest(cls.GUEST, cache_dir=GUEST_CACHE)
        cls.template = cls.build_template()

    @classmethod
    def build_template(cls, key=None, settings=SETTINGS):
        key = key or keys.substrate_key(cls.guest.name, cls.guest.digest,
                                        cls.MEMORY_MB, cls.VCPUS,
                                        {'test': uuid.uuid4().hex})
        name = 'it-build-%s' % uuid.uuid4().hex[:8]
        xml = guest_domain.instance_xml(
            cls.guest, name, str(uuid.uuid4()), cls.MEMORY_MB, cls.VCPUS,
            cls.guest.disk, os.path.join(cls.work, name + '.log'))
        spec = build.BuildSpec(key=key, domain_xml=xml,
                               memory_mb=cls.MEMORY_MB, vcpus=cls.VCPUS,
                               console_log=os.path.join(cls.work,
                                                        name + '.log'))
        return build.build_substrate(cls.conn, cls.pool, spec, settings)

    def clone_spec(self, hostname, nics=1, **kw):
        name = 'it-clone-%s' % uuid.uuid4().hex[:8]
        fields = dict(
            name=name, uuid=str(uuid.uuid4()),
            overlay_path=os.path.join(self.work, name + '.qcow2'),
            vcpus=self.VCPUS, memory_mb=self.MEMORY_MB, hostname=hostname,
            console_log=os.path.join(self.work, name + '.log'),
            nics=[domainxml.interface_xml(random_mac())
                  for _ in range(nics)],
            metadata={'test': self.id()})
        fields.update(kw)
        return activate.CloneSpec(**fields)

    def activate(self, spec, settings=SETTINGS, key=None):
        clone = activate.activate_clone(self.conn, self.pool,
                                        key or self.template.key, spec,
                                        settings)
        self.addCleanup(activate.destroy_clone, self.pool, clone)
        return clone

    def assertNoTrace(self, spec):
        """Nothing of a failed activation is left: domain, files, marker."""
        self.assertRaises(libvirt.libvirtError,
                          self.conn.lookupByUUIDString, spec.uuid)
        self.assertFalse(os.path.exists(spec.overlay_path))
        self.assertEqual([], os.listdir(os.path.join(self.pool.path,
                                                     'claimed')))
        for t in self.pool.templates():
            self.assertNotIn(spec.uuid,
                             self.pool.layer_users(t.meta['layer_id']))
