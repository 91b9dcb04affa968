"""Building a substrate: boot miniaturized, wait ready, generalize, save.

The guest boots once, with its target's maximum memory and vCPUs but a
small current size and no NICs. When its hook reports the boot finished,
the hook removes everything that identifies it, and libvirt saves its
memory state. The disk overlay the boot wrote becomes the template's
frozen layer; the memory state goes to the pool.
"""

import contextlib
import dataclasses
import os
import shutil
import time
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import qemuimg
from nova_substrate.engine import saveimage

LOG = logging.getLogger(__name__)

# How long the balloon gets to reach its target before the save goes
# ahead anyway; a slow balloon only makes the memory state larger.
_BALLOON_SETTLE_S = 10.0
# A balloon that has not moved for this long has gone as far as it will:
# the guest's driver gives up on pages it cannot get.
_BALLOON_STILL_S = 1.5
# Free memory the guest keeps while the balloon squeezes out the rest.
_SQUEEZE_MARGIN_KB = 4 * 1024
# Zeroed memory handed back to the guest after the squeeze.
_HEADROOM_KB = 32 * 1024
_SQUEEZE_FLOOR_KB = 32 * 1024


@dataclasses.dataclass
class BuildSpec:
    """What to build a substrate of.

    domain_xml is the full domain of the instances the substrate will
    become (its root disk names the base image); memory_mb and vcpus are
    the size clones grow to; labels are recorded as they are (image id,
    flavor, checksum: whatever the caller keys on).
    """
    key: str
    domain_xml: str
    memory_mb: int
    vcpus: int
    labels: dict = dataclasses.field(default_factory=dict)
    console_log: str = None


def build_substrate(conn, pool, spec, settings, progress=None):
    """Build and dock a substrate for spec.key; returns the pool Template."""
    say = progress or (lambda msg: None)
    started = time.monotonic()
    deadline = started + settings.build_timeout
    layer_id = pool.new_layer()
    layer = pool.layer_file(layer_id)
    save_tmp = pool.tmp_path('.save')
    name = 'substrate-%s-%s' % (spec.key[:12], uuid.uuid4().hex[:8])
    dom = None
    try:
        base = domainxml.disk_source(domainxml.parse(spec.domain_xml))
        base_info = qemuimg.info(base)
        qemuimg.create_overlay(layer, base, base_info['format'])
        xml = domainxml.miniaturize(
            spec.domain_xml, name=name, uuid=str(uuid.uuid4()),
            memory_mb=spec.memory_mb, vcpus=spec.vcpus,
            build_memory_mb=settings.build_memory_mb,
            spare_ports=settings.spare_pcie_ports, disk_path=layer,
            console_log=spec.console_log)
        xml = _with_free_root_ports(conn, xml, settings.spare_pcie_ports)
        say('booting %s (%d MiB max, %d MiB current)' % (
            name, spec.memory_mb, settings.build_memory_mb))
        dom = conn.createXML(xml, 0)
        agent = guest_agent.GuestAgent(dom)
        agent.wait_ready(deadline)
        _wait_booted(agent, settings.hook_path, deadline)
        booted = time.monotonic()
        say('booted in %.1f s; generalizing' % (booted - started))
        agent.hook(settings.hook_path, 'generalize', deadline=deadline)
        _squeeze(dom, agent, settings.build_memory_mb, deadline)
        say('saving memory state')
        dom.saveFlags(save_tmp, None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        dom = None      # a saved transient domain is gone
        header = saveimage.read_header(save_tmp)
        digest, stream_bytes = saveimage.stream_digest(save_tmp,
                                                       header.stream_offset)
        os.chmod(layer, 0o600)
        meta = {
            'key': spec.key,
            'layer_id': layer_id,
            'base': base,
            'base_format': base_info['format'],
            'disk_bytes': base_info['virtual-size'],
            'stream_sha256': digest,
            'stream_bytes': stream_bytes,
            'memory_mb': spec.memory_mb,
            'vcpus': spec.vcpus,
            'build_memory_mb': settings.build_memory_mb,
            'boot_s': round(booted - started, 3),
            'build_s': round(time.monotonic() - started, 3),
            'created': time.time(),
            'labels': spec.labels,
        }
        template = pool.add_template(spec.key, save_tmp, meta)
    except Exception as e:
        _cleanup_build(dom, save_tmp, pool.layer_dir(layer_id))
        if isinstance(e, (exception.SubstrateError, libvirt.libvirtError)):
            raise exception.BuildError('building substrate %s failed: %s'
                                       % (spec.key, e)) from e
        raise
    say('docked %s: %.1f MiB memory state in %.1f s' % (
        spec.key, stream_bytes / 2 ** 20, meta['build_s']))
    return template


def _with_free_root_ports(conn, xml, wanted):
    """xml with libvirt's device addresses and wanted free root ports.

    Root ports cannot be hot-plugged, so the ports clones plug NICs into
    must exist when the substrate boots. libvirt fills free ports with
    the domain's own devices when it assigns addresses, so ask it (define,
    read back, undefine) and add ports until enough stay free.
    """
    for _attempt in range(3):
        dom = conn.defineXML(xml)
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE |
                              libvirt.VIR_DOMAIN_XML_SECURE)
        finally:
            dom.undefine()
        missing = wanted - domainxml.free_root_ports(xml)
        if missing <= 0:
            return xml
        xml = domainxml.add_root_ports(xml, missing)
    raise exception.BuildError('libvirt keeps using the spare PCIe root '
                               'ports for devices')


def _wait_booted(agent, hook_path, deadline):
    while True:
        status = agent.hook(hook_path, 'status', deadline=deadline)
        if status.get('ready'):
            return
        if time.monotonic() >= deadline:
            raise exception.GuestAgentTimeout('guest did not finish booting')
        time.sleep(0.1)


def _meminfo(agent, deadline):
    out = agent.run('/bin/cat', ['/proc/meminfo'], deadline=deadline).stdout
    info = {}
    for line in out.splitlines():
        name, _, value = line.partition(':')
        if value.strip().endswith('kB'):
            info[name] = int(value.split()[0])
    return info


def _squeeze(dom, agent, build_memory_mb, deadline):
    """Inflate the balloon over the guest's free memory before the save.

    Free pages still hold whatever the boot left in them (the unpacked
    initrd, the decompressed kernel); ballooned pages are discarded by
    QEMU and cost nothing in the memory state. The guest's balloon driver
    never takes memory the guest is using, so this cannot starve it; the
    activation deflates the balloon again.
    """
    _settle_balloon(dom, build_memory_mb * 1024, deadline)
    free_kb = _meminfo(agent, deadline).get('MemFree', 0)
    actual_kb = dom.info()[2]
    target_kb = max(actual_kb - free_kb + _SQUEEZE_MARGIN_KB,
                    _SQUEEZE_FLOOR_KB)
    if target_kb < actual_kb:
        dom.setMemoryFlags(target_kb, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        _settle_balloon(dom, target_kb, deadline)
        # Give the guest headroom back: the pages the balloon returns
        # were discarded, so they are free in the guest and zero in the
        # memory state. A clone starts with room for what its activation
        # allocates (NIC rings, processes started by hot-plug events)
        # before its balloon deflates.
        dom.setMemoryFlags(
            min(target_kb + _HEADROOM_KB, build_memory_mb * 1024),
            libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _settle_balloon(dom, target_kb, deadline):
    """Wait until the balloon reaches target_kb or stops moving."""
    end = min(deadline, time.monotonic() + _BALLOON_SETTLE_S)
    last, still_since = None, time.monotonic()
    while time.monotonic() < end:
        now = dom.info()[2]
        if now <= target_kb:
            return
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > _BALLOON_STILL_S:
            break
        time.sleep(0.1)
    LOG.warning('Balloon of %s stopped at %d KiB, above its target of %d '
                'KiB; the memory state will be larger', dom.name(), last,
                target_kb)


def _cleanup_build(dom, save_tmp, layer_dir):
    if dom is not None:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(save_tmp)
    shutil.rmtree(layer_dir, ignore_errors=True)
