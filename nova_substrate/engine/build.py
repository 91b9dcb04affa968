"""Building a substrate: boot, wait for the first boot, generalize, save.

The guest boots once, at its target's memory (a first boot that unpacks,
generates and starts things needs it) with one vCPU and no NICs, as a
placeholder cloud-init instance. When its hook reports the boot finished,
cloud-init included, the hook removes everything that identifies it, the
balloon squeezes out the memory the boot no longer uses, the remaining
vCPUs are plugged, and libvirt saves its memory state. The disk overlay
the boot wrote becomes the template's frozen layer; the memory state goes
to the pool.
"""

import contextlib
import dataclasses
import os
import shutil
import time
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import deliver
from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import guest_tools
from nova_substrate.engine import qemuimg
from nova_substrate.engine import saveimage

LOG = logging.getLogger(__name__)

#: Names of build domains start with it; they are nobody's instances.
DOMAIN_PREFIX = 'substrate-'

# How long the balloon gets to reach its target before the save goes
# ahead anyway; a slow balloon only makes the memory state larger.
_BALLOON_SETTLE_S = 10.0
# A balloon that has not moved for this long has gone as far as it will:
# the guest's driver gives up on pages it cannot get.
_BALLOON_STILL_S = 1.5
# Free memory the guest keeps while the balloon squeezes out the rest.
_SQUEEZE_MARGIN_KB = 4 * 1024
_SQUEEZE_FLOOR_KB = 32 * 1024
# How often a build asks the guest how its first boot is going.
_BOOT_POLL_S = 0.5


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
    #: Virtual size of the clones' root disk; the base image's if unset.
    #: Nova gives an instance's disk its flavor's root_gb, and the guest
    #: reads the size once, at boot.
    disk_bytes: int = None
    #: Copy the direct-boot kernel and initrd the XML names into the
    #: layer, so the build does not depend on where the caller keeps them
    #: (Nova: a scratch instance directory, removed before the boot).
    copy_boot_files: bool = False


def build_substrate(conn, pool, spec, settings, progress=None):
    """Build and dock a substrate for spec.key; returns the pool Template."""
    say = progress or (lambda msg: LOG.info('Substrate %s: %s', spec.key,
                                            msg))
    started = time.monotonic()
    deadline = started + settings.build_timeout
    layer_id = pool.new_layer()
    layer = pool.layer_file(layer_id)
    save_tmp = pool.tmp_path('.save')
    name = '%s%s-%s' % (DOMAIN_PREFIX, spec.key[:12], uuid.uuid4().hex[:8])
    dom = None
    try:
        base = domainxml.disk_source(domainxml.parse(spec.domain_xml))
        base_info = qemuimg.info(base)
        disk_bytes = spec.disk_bytes or base_info['virtual-size']
        qemuimg.create_overlay(layer, base, base_info['format'],
                               size=disk_bytes)
        xml = domainxml.miniaturize(
            spec.domain_xml, name=name, uuid=str(uuid.uuid4()),
            memory_mb=spec.memory_mb, vcpus=spec.vcpus,
            build_memory_mb=settings.build_memory_mb,
            spare_ports=settings.spare_pcie_ports, disk_path=layer,
            console_log=spec.console_log or os.path.join(
                pool.layer_dir(layer_id), 'build-console.log'))
        if spec.copy_boot_files:
            xml = _copy_boot_files(xml, pool.layer_dir(layer_id))
        xml = _with_free_root_ports(conn, xml, settings.spare_pcie_ports)
        boot_memory_mb = min(settings.build_memory_mb or spec.memory_mb,
                             spec.memory_mb)
        say('booting %s (%d MiB, 1 of %d vCPUs)' % (
            name, boot_memory_mb, spec.vcpus))
        dom = conn.createXML(xml, 0)
        agent = guest_agent.GuestAgent(dom)
        wait_agent(agent, settings, deadline)
        if deliver.install_guest_tools(
                agent, settings.hook_path, deliver.GUESTUTIL_PATH,
                guest_tools.GuestTools(settings.guest_tools_path), deadline):
            say('installed the hook and its helper through the guest agent')
        status = wait_first_boot(agent, settings, deadline, say)
        booted = time.monotonic()
        say('booted in %.1f s (cloud-init: %s); generalizing' % (
            booted - started, status.get('cloud_init', 'unknown')))
        agent.hook(settings.hook_path, 'generalize', deadline=deadline)
        _squeeze(dom, agent, boot_memory_mb, spec.memory_mb, deadline)
        _add_vcpus(dom, agent, spec.vcpus, deadline)
        say('saving memory state')
        dom_memory_kb = dom.info()[2]
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
            'disk_bytes': disk_bytes,
            'stream_sha256': digest,
            'stream_bytes': stream_bytes,
            'memory_mb': spec.memory_mb,
            'vcpus': spec.vcpus,
            'build_memory_mb': boot_memory_mb,
            # What the guest has for taking its identity: cloud-init
            # absent, disabled or done, and the hook's version.
            'guest': {'cloud_init': status.get('cloud_init', 'absent'),
                      'hook_version': status.get('hook_version')},
            # The size clones are restored at; activation grows them
            # only beyond it.
            'current_memory_mb': dom_memory_kb // 1024,
            'current_vcpus': spec.vcpus,
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


def wait_agent(agent, settings, deadline):
    """Wait until the guest agent answers; a timeout names the option."""
    try:
        agent.wait_ready(deadline)
    except exception.GuestAgentTimeout:
        raise exception.GuestAgentTimeout(
            'the guest agent did not answer within the build timeout '
            '(%d s, [substrate] build_timeout): the image needs '
            'qemu-guest-agent and the property hw_qemu_guest_agent=yes, '
            'and its first boot must fit in the flavor\'s memory'
            % settings.build_timeout)


def wait_first_boot(agent, settings, deadline, say):
    """Wait until the hook says the guest's first boot is over.

    That is the init system done and cloud-init done (or absent, or
    disabled); say() is told each change of either while the build waits.
    Returns the hook's last status. A timeout names the option that
    bounds it and what the guest was still doing.
    """
    last = None
    while True:
        status = agent.hook(settings.hook_path, 'status', deadline=deadline)
        if status.get('ready'):
            return status
        state = 'init system %s, cloud-init %s' % (
            status.get('init', 'starting'), status.get('cloud_init', '?'))
        if state != last:
            say('waiting for the first boot to finish: %s' % state)
            last = state
        if time.monotonic() >= deadline:
            raise exception.GuestAgentTimeout(
                'the guest did not finish its first boot within the build '
                'timeout (%d s, [substrate] build_timeout): %s'
                % (settings.build_timeout, state))
        time.sleep(_BOOT_POLL_S)


def abort_builds(conn, layer_root):
    """Destroy the build domains whose layers are under layer_root.

    Their builds then fail at their next step and clean up after
    themselves; a service that stops does not wait for a boot to finish.
    """
    aborted = 0
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            if (dom.name().startswith(DOMAIN_PREFIX) and
                    layer_root.rstrip(os.sep) + os.sep in dom.XMLDesc(0)):
                dom.destroy()
                aborted += 1
        except libvirt.libvirtError:
            continue    # gone meanwhile
    return aborted


def _copy_boot_files(xml, layer_dir):
    """xml reading its kernel, initrd and other disks from layer_dir copies.

    The root disk is the layer itself and is left alone.
    """
    moved = {}
    for name, path in domainxml.local_files(xml).items():
        copy = os.path.join(layer_dir, name)
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o600)
        moved[path] = copy
    return domainxml.relocate_files(xml, moved)


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


def _meminfo(agent, deadline):
    out = agent.run('/bin/cat', ['/proc/meminfo'], deadline=deadline).stdout
    info = {}
    for line in out.splitlines():
        name, _, value = line.partition(':')
        if value.strip().endswith('kB'):
            info[name] = int(value.split()[0])
    return info


def _squeeze(dom, agent, build_memory_mb, memory_mb, deadline):
    """Zero the guest's free memory, then give the guest its full size.

    Free pages still hold whatever the boot left in them (the unpacked
    initrd, the decompressed kernel). The balloon is inflated over them:
    QEMU discards ballooned pages, and the guest's driver never takes
    memory in use, so this cannot starve the guest. Deflating it again
    hands the guest back pages that are zero on the host: free for the
    guest, almost nothing in the memory state. Clones then start at the
    flavor's size, with no balloon to deflate on the activation path
    (under TCG that takes the guest most of a second).
    """
    _settle_balloon(dom, build_memory_mb * 1024, deadline)
    free_kb = _meminfo(agent, deadline).get('MemFree', 0)
    actual_kb = dom.info()[2]
    target_kb = max(actual_kb - free_kb + _SQUEEZE_MARGIN_KB,
                    _SQUEEZE_FLOOR_KB)
    if target_kb < actual_kb:
        dom.setMemoryFlags(target_kb, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        _settle_balloon(dom, target_kb, deadline)
    dom.setMemoryFlags(memory_mb * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    _settle_balloon(dom, memory_mb * 1024, deadline)


def _add_vcpus(dom, agent, vcpus, deadline):
    """Hot-plug the remaining vCPUs and have the guest online them.

    Done once here rather than in every activation: under TCG a guest
    takes about half a second to bring a hot-plugged vCPU online.
    """
    if vcpus <= 1:
        return
    dom.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    while True:
        cpus = agent.command('guest-get-vcpus')
        offline = [{'logical-id': c['logical-id'], 'online': True}
                   for c in cpus if not c['online']]
        if len(cpus) >= vcpus and not offline:
            return
        if offline:
            agent.command('guest-set-vcpus', {'vcpus': offline})
        if time.monotonic() >= deadline:
            raise exception.GuestAgentTimeout(
                'guest brought %d of %d vCPUs online'
                % (len(cpus) - len(offline), vcpus))
        time.sleep(0.05)


def _settle_balloon(dom, target_kb, deadline):
    """Wait until the balloon reaches target_kb or stops moving."""
    end = min(deadline, time.monotonic() + _BALLOON_SETTLE_S)
    last, still_since = None, time.monotonic()
    while time.monotonic() < end:
        now = dom.info()[2]
        # The balloon works in pages and the guest keeps a little back:
        # within a MiB is there.
        if abs(now - target_kb) <= 1024:
            return
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > _BALLOON_STILL_S:
            break
        time.sleep(0.1)
    LOG.warning('Balloon of %s stopped at %d KiB, short of its target of '
                '%d KiB', dom.name(), last, target_kb)


def _cleanup_build(dom, save_tmp, layer_dir):
    if dom is not None:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(save_tmp)
    shutil.rmtree(layer_dir, ignore_errors=True)
