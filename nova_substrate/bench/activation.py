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
"""

import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
import uuid

import libvirt

from nova_substrate.engine import activate
from nova_substrate.engine import build
from nova_substrate.engine import domainxml
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import keys
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import qemuimg
from nova_substrate.engine import saveimage
from nova_substrate import guests
from nova_substrate.guests import domain as guest_domain


def _median(values):
    return round(statistics.median(values), 4)


class ActivationBench(object):

    def __init__(self, conn, settings, guest_name, work_path, memory_mb=512,
                 vcpus=2, runs=5, clones=8, progress=None,
                 guest_cache_dir=None):
        self.conn = conn
        self.settings = settings
        self.memory_mb = memory_mb
        self.vcpus = vcpus
        self.runs = runs
        self.clones = clones
        self.say = progress or (lambda msg: None)
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
        for t in self.pool.templates():
            self.pool.remove(t.key)
        self.pool.collect_layers(lambda u: False)
        shutil.rmtree(self.pool.path, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def _path(self, name):
        return os.path.join(self.work, name)

    def _instance_xml(self, name, nics=()):
        disk = self._path(name + '.qcow2')
        qemuimg.create_overlay(disk, self.guest.disk, 'qcow2')
        return guest_domain.instance_xml(
            self.guest, name, str(uuid.uuid4()), self.memory_mb, self.vcpus,
            disk, self._path(name + '.log'), nics)

    def measure_boot(self):
        nic = domainxml.interface_xml(domainxml.random_mac())
        name = 'bench-boot-%s' % uuid.uuid4().hex[:8]
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

    def build(self):
        key = keys.substrate_key(self.guest.name, self.guest.digest,
                                 self.memory_mb, self.vcpus)
        # The build puts its own overlay (the future layer) on the disk
        # the XML names: the guest's image itself.
        xml = guest_domain.instance_xml(
            self.guest, 'bench-template', str(uuid.uuid4()), self.memory_mb,
            self.vcpus, self.guest.disk, self._path('template.log'))
        spec = build.BuildSpec(key=key, domain_xml=xml,
                               memory_mb=self.memory_mb, vcpus=self.vcpus,
                               labels={'guest': self.guest.name},
                               console_log=self._path('template.log'))
        return build.build_substrate(self.conn, self.pool, spec,
                                     self.settings, progress=self.say)

    def clone_spec(self, i):
        name = 'bench-clone-%s' % uuid.uuid4().hex[:8]
        return activate.CloneSpec(
            name=name, uuid=str(uuid.uuid4()),
            overlay_path=self._path(name + '.qcow2'),
            vcpus=self.vcpus, memory_mb=self.memory_mb,
            hostname='clone-%d' % i, console_log=self._path(name + '.log'),
            nics=[domainxml.interface_xml(domainxml.random_mac())],
            metadata={'bench': True})

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

    def run(self):
        result = {'guest': self.guest.name, 'flavor_ram_mb': self.memory_mb,
                  'vcpus': self.vcpus, 'runs': self.runs,
                  'clones': self.clones}
        boots = []
        for i in range(self.runs):
            boots.append(self.measure_boot())
            self.say('boot %d/%d: %.2f s' % (i + 1, self.runs, boots[-1]))
        t0 = time.monotonic()
        template = self.build()
        result['build_s'] = round(time.monotonic() - t0, 2)
        result['substrate_bytes'] = os.stat(
            template.save_path).st_blocks * 512
        floors, readies, runnings, phases = [], [], [], []
        for i in range(self.runs):
            floors.append(self.measure_floor(template))
            self.pool.fill(template.key, 1)
            clone = self.activate_one(template, i)
            activate.destroy_clone(self.pool, clone)
            readies.append(clone.timings['ready_s'])
            runnings.append(clone.timings['running_s'])
            phases.append(clone.timings)
            self.say('activation %d/%d: running %.3f s, ready %.3f s '
                     '(libvirt floor %.3f s)' % (i + 1, self.runs,
                                                 runnings[-1], readies[-1],
                                                 floors[-1]))
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
            'boot_runs_s': [round(v, 4) for v in boots],
            'activate_runs_s': [round(v, 4) for v in readies],
            'running_runs_s': [round(v, 4) for v in runnings],
            'libvirt_floor_runs_s': [round(v, 4) for v in floors],
            # Where an activation's time goes: medians of the time from
            # activation start to the end of each phase.
            'activate_phases_s': {
                phase: _median([p[phase] for p in phases])
                for phase in phases[0]},
            'memory_verified': self.settings.verify_memory,
        })
        result['ratio'] = round(result['boot_s'] / result['activate_s'], 2)
        result['running_over_floor'] = round(
            result['running_s'] / result['libvirt_floor_s'], 2)
        result['concurrent_over_single'] = round(
            concurrent_s / result['activate_s'], 2)
        result['substrate_fraction_of_ram'] = round(
            result['substrate_bytes'] / (self.memory_mb * 2 ** 20), 3)
        return result


def _template_xml(template):
    return saveimage.read_header(template.save_path).domain_xml


@contextlib.contextmanager
def activation_bench(*args, **kwargs):
    bench = ActivationBench(*args, **kwargs)
    try:
        yield bench
    finally:
        bench.close()
