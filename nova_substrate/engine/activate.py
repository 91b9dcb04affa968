"""Activating a clone: claim, re-identify, restore, grow, hand over identity.

No boot happens: the clone is the template's guest, restored from memory
under a new name and uuid on a disk overlay of its own, then grown to its
size, given its NICs, and told who it is. It counts as activated only
when the guest confirms its new identity.
"""

import base64
import contextlib
import dataclasses
import io
import json
import os
import tarfile
import threading
import time

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import domainxml
from nova_substrate.engine import early_access
from nova_substrate.engine import exception
from nova_substrate.engine import guest as guest_agent
from nova_substrate.engine import qemuimg
from nova_substrate.engine import saveimage

LOG = logging.getLogger(__name__)

SEED_BYTES = 64


@dataclasses.dataclass
class CloneSpec:
    """The clone to make: its domain identity, size, NICs and identity.

    nics are libvirt <interface> XML documents, hot-plugged after restore
    (once the guest has its new identity and entropy); their MAC
    addresses are what the guest waits for. instance_data is what a
    booted instance reads from its config drive (relative path to bytes,
    in the config drive's layout: openstack/latest/meta_data.json, ...):
    cloud-init in the guest takes it as a new instance's datasource, in
    the background of the activation; the hook has applied the static
    addresses and the login keys it holds first (early_access).
    metadata is handed to the guest as JSON, for guests without
    cloud-init.
    """
    name: str
    uuid: str
    overlay_path: str
    vcpus: int
    memory_mb: int
    hostname: str
    console_log: str = None
    nics: list = dataclasses.field(default_factory=list)
    metadata: dict = dataclasses.field(default_factory=dict)
    instance_data: dict = None
    #: The full domain XML the clone stands in for (Nova's, for an
    #: instance): when given, the clone takes its identity, disks and
    #: console log from it (domainxml.adopt_identity).
    owner_xml: str = None


@dataclasses.dataclass
class Clone:
    """An activated clone: its domain and what the activation measured."""
    domain: object
    key: str
    layer_id: str
    overlay_path: str
    timings: dict
    guest: dict

    @property
    def uuid(self):
        return self.domain.UUIDString()


def nic_macs(nics):
    macs = []
    for nic in nics:
        mac = domainxml.parse(nic).find('mac')
        if mac is None or not mac.get('address'):
            raise exception.ActivationError('NIC XML without a MAC address')
        macs.append(mac.get('address').lower())
    return macs


class _Digest(threading.Thread):
    """The memory state's checksum, computed beside the restore."""

    def __init__(self, path, offset):
        super().__init__(daemon=True)
        self.path, self.offset = path, offset
        self.result = self.error = None

    def run(self):
        try:
            self.result = saveimage.stream_digest(self.path, self.offset)[0]
        except OSError as e:
            self.error = e


def activate_clone(conn, pool, key, spec, settings, copy_if_empty=True):
    """Activate a clone of the substrate key as spec describes.

    Returns a Clone. On any failure the half-made domain, its overlay,
    the claimed memory state and the layer's user marker are removed and
    ActivationError (or CorruptSubstrate) is raised.
    """
    t0 = time.monotonic()
    timings = {}
    macs = nic_macs(spec.nics)
    claim = pool.claim(key, copy_if_empty=copy_if_empty)
    template = claim.template
    layer_id = template.meta['layer_id']
    dom = digest = None
    overlay_made = False
    try:
        _check_fits(spec, template.meta)
        header = saveimage.check(claim.path, template.stream_bytes)
        if settings.verify_memory:
            digest = _Digest(claim.path, header.stream_offset)
            digest.start()
        pool.add_layer_user(layer_id, spec.uuid)
        qemuimg.create_overlay(spec.overlay_path, template.layer_path,
                               'qcow2', size=template.meta.get('disk_bytes'))
        overlay_made = True
        saveimage.rewrite_header(claim.path, _clone_xml(header.domain_xml,
                                                        spec))
        timings['prepared_s'] = time.monotonic() - t0
        conn.restoreFlags(claim.path, None, libvirt.VIR_DOMAIN_SAVE_PAUSED)
        dom = conn.lookupByUUIDString(spec.uuid)
        timings['restored_s'] = time.monotonic() - t0
        _check_digest(pool, key, template, digest)
        claim.discard()
        _reinsert_media(dom)
        dom.resume()
        timings['running_s'] = time.monotonic() - t0
        _grow(dom, spec, template.meta)
        timings['grown_s'] = time.monotonic() - t0
        deadline = t0 + settings.activate_timeout
        agent = guest_agent.GuestAgent(dom)
        agent.wait_ready(deadline)
        timings['agent_s'] = time.monotonic() - t0
        report = _hand_over_identity(agent, dom, spec, macs, settings,
                                     deadline, timings, t0)
        timings['ready_s'] = time.monotonic() - t0
    except BaseException as e:
        if digest is not None and not isinstance(
                e, exception.CorruptSubstrate):
            # QEMU may reject a damaged stream before the checksum is in:
            # the substrate must still go.
            try:
                _check_digest(pool, key, template, digest)
            except exception.CorruptSubstrate as corrupt:
                e = corrupt
        _cleanup(conn, dom, spec, pool, layer_id, claim, overlay_made)
        if isinstance(e, (exception.CorruptSubstrate,
                          exception.NoSubstrate)):
            raise e
        if isinstance(e, (exception.SubstrateError, libvirt.libvirtError)):
            raise exception.ActivationError(
                'activating %s from substrate %s failed: %s'
                % (spec.name, key, e)) from e
        raise
    LOG.info('Activated %s from substrate %s in %.3f s (running after '
             '%.3f s)', spec.name, key, timings['ready_s'],
             timings['running_s'])
    return Clone(dom, key, layer_id, spec.overlay_path,
                 {k: round(v, 4) for k, v in timings.items()}, report)


def _check_digest(pool, key, template, digest):
    """Wait for the checksum of the memory state; remove key if it differs."""
    if digest is None:
        return
    digest.join()
    if digest.result != template.meta['stream_sha256']:
        pool.remove(key)
        raise exception.CorruptSubstrate(
            'memory state of substrate %s does not match its checksum (%s); '
            'the substrate was removed'
            % (key, digest.error or 'content differs'))


def _clone_xml(template_xml, spec):
    if spec.owner_xml:
        return domainxml.adopt_identity(template_xml, spec.owner_xml,
                                        spec.overlay_path)
    return domainxml.reidentify(template_xml, spec.name, spec.uuid,
                                spec.overlay_path, spec.console_log)


def _check_fits(spec, meta):
    if spec.vcpus > meta['vcpus'] or spec.memory_mb > meta['memory_mb']:
        raise exception.ActivationError(
            'substrate is built for at most %d vCPUs and %d MiB, clone '
            'wants %d and %d' % (meta['vcpus'], meta['memory_mb'],
                                 spec.vcpus, spec.memory_mb))


def _reinsert_media(dom):
    """Eject and insert again every CD-ROM of the restored clone.

    The clone's config drive is its own instance's, but the guest kernel
    still holds the size and contents of the template's placeholder it
    saw at build time. A medium change is what makes a guest read a
    CD-ROM again: QEMU reports it, and the guest revalidates the drive
    on its next open.
    """
    flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE |
             libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)
    for ejected, inserted in domainxml.cdrom_changes(dom.XMLDesc(0)):
        dom.updateDeviceFlags(ejected, flags)
        dom.updateDeviceFlags(inserted, flags)


def _grow(dom, spec, meta):
    """vCPUs hot-plugged and balloon deflated where needed.

    Templates are saved at their full size, so for a clone of its own
    key's size nothing is done here. NICs come later, once the guest has
    its new identity.
    """
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    if spec.vcpus > meta.get('current_vcpus', 1):
        dom.setVcpusFlags(spec.vcpus, live)
    if spec.memory_mb > meta.get('current_memory_mb', 0):
        dom.setMemoryFlags(spec.memory_mb * 1024, live)


def instance_data_tar(files):
    """files (relative path to bytes) as a tar archive, root's alone."""
    out = io.BytesIO()
    dirs = set()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(files):
            parts = path.split('/')
            if path.startswith('/') or '..' in parts or '' in parts:
                raise exception.ActivationError(
                    'instance data path %r is not relative' % path)
            for depth in range(1, len(parts)):
                parent = '/'.join(parts[:depth])
                if parent not in dirs:
                    dirs.add(parent)
                    tar.addfile(_tar_member(parent, tarfile.DIRTYPE, 0o700))
            data = files[path]
            if isinstance(data, str):
                data = data.encode('utf-8')
            tar.addfile(_tar_member(path, tarfile.REGTYPE, 0o600,
                                    len(data)), io.BytesIO(data))
    return out.getvalue()


def _tar_member(name, kind, mode, size=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.uid = info.gid = 0
    info.mtime = int(time.time())
    return info


def _hand_over_identity(agent, dom, spec, macs, settings, deadline,
                        timings, t0):
    """The guest's new identity, then its NICs and instance data.

    The NICs are plugged only once the guest has reseeded its RNG and
    renewed its machine-id: DHCP client ids and IPv6 addresses derive
    from them. Without NICs both steps are one call of the hook.
    """
    identity = {
        'time_ns': time.time_ns(),
        'seed': os.urandom(SEED_BYTES).hex(),
        'hostname': spec.hostname,
        'instance_uuid': spec.uuid,
        'vcpus': spec.vcpus,
        'ssh_keys': settings.ssh_host_keys,
    }
    network = {'instance_uuid': spec.uuid, 'macs': ','.join(macs)}
    if spec.metadata:
        network['metadata_b64'] = base64.b64encode(
            json.dumps(spec.metadata).encode()).decode()
    tail = login_keys = None
    if spec.instance_data:
        early = early_access.hook_fields(spec.instance_data)
        login_keys = [('login_key', k) for k in early.pop('login_keys')]
        network.update(early)
        tail = 'instance_data_b64\n%s\n' % base64.b64encode(
            instance_data_tar(spec.instance_data)).decode()

    def network_input(wait):
        return list(dict(network, wait_s=wait).items()) + (login_keys or [])

    def wait_s():
        return max(1, int(deadline - time.monotonic()))

    if not spec.nics:
        report = agent.hook(settings.hook_path, 'activate',
                            list(identity.items()) + network_input(wait_s()),
                            deadline=deadline, accept=(0, 3), tail=tail)
    else:
        report = agent.hook(settings.hook_path, 'identity',
                            dict(identity, wait_s=wait_s()),
                            deadline=deadline, accept=(0, 3))
        _check_report(report, 'identity')
        timings['identity_s'] = time.monotonic() - t0
        _guest_steps(timings, report)
        for nic in spec.nics:
            dom.attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        timings['nics_s'] = time.monotonic() - t0
        report.update(agent.hook(settings.hook_path, 'network',
                                 network_input(wait_s()), deadline=deadline,
                                 accept=(0, 3), tail=tail))
    _guest_steps(timings, report)
    macs_up = {m.lower() for m in report.get('macs_up', [])}
    missing = sorted(set(macs) - macs_up)
    if report.get('error') or missing or \
            report.get('vcpus_online') != spec.vcpus:
        raise exception.ActivationError(
            'guest did not take its identity: %s (vCPUs online %s of %d, '
            'NICs missing %s)' % (report.get('error', 'incomplete'),
                                  report.get('vcpus_online'), spec.vcpus,
                                  missing or 'none'))
    if report.get('hostname') != spec.hostname:
        raise exception.ActivationError('guest reports hostname %r, not %r'
                                        % (report.get('hostname'),
                                           spec.hostname))
    return report


def _guest_steps(timings, report):
    """The hook's own step times (guest_<step>_s, from its start)."""
    for step, cs in (report.pop('steps_cs', None) or {}).items():
        if isinstance(cs, int):
            timings['guest_%s_s' % step] = cs / 100.0


def _check_report(report, step):
    if report.get('error'):
        raise exception.ActivationError('guest failed its %s: %s'
                                        % (step, report['error']))


def _cleanup(conn, dom, spec, pool, layer_id, claim, overlay_made):
    if dom is None:
        # restoreFlags may have failed after libvirt created the domain.
        with contextlib.suppress(libvirt.libvirtError):
            dom = conn.lookupByUUIDString(spec.uuid)
    if dom is not None:
        destroy_domain(dom)
    if overlay_made:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spec.overlay_path)
    claim.discard()
    pool.remove_layer_user(layer_id, spec.uuid)


def destroy_domain(dom):
    """Stop dom and forget it, whether it is transient or defined."""
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def destroy_clone(pool, clone):
    """Tear down an activated clone: domain, overlay, layer marker."""
    domain_uuid = clone.uuid
    destroy_domain(clone.domain)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(clone.overlay_path)
    pool.remove_layer_user(clone.layer_id, domain_uuid)
