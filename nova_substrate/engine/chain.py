"""Taking a clone's disk off its substrate's layer.

A clone starts on a disk overlay of its template's frozen layer, which
sits on the base image. Streaming the layer's clusters into the overlay
(a block stream down to the base, while the guest runs) leaves the
clone's disk an ordinary overlay of the base image: the chain a booted
instance has, which resize, migration and image cache management expect.
The layer is then no longer the clone's.
"""

import time

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import qemuimg

LOG = logging.getLogger(__name__)

_POLL_S = 0.1


def on_layer(disk_path, layer_path):
    """Is the disk still an overlay of the layer?"""
    try:
        return qemuimg.backing_file(disk_path) == layer_path
    except exception.SubstrateError:
        return False


def _target_of(dom, disk_path):
    root = domainxml.parse(dom.XMLDesc(0))
    for disk in root.findall('./devices/disk'):
        source = disk.find('source')
        if source is not None and source.get('file') == disk_path:
            return disk.find('target').get('dev')
    raise exception.SubstrateError('domain %s has no disk %s'
                                   % (dom.name(), disk_path))


def flatten(dom, disk_path, base, base_format, timeout):
    """Take disk_path off its layer, onto base; returns when done.

    With a running domain (dom not None and active) this is a live block
    stream, joined if one is already under way; otherwise an offline
    qemu-img rebase.
    """
    if dom is None or not dom.isActive():
        qemuimg.rebase(disk_path, base, base_format)
        return
    dev = _target_of(dom, disk_path)
    if not dom.blockJobInfo(dev, 0):
        dom.blockRebase(dev, base, 0, 0)
    deadline = time.monotonic() + timeout
    while dom.blockJobInfo(dev, 0):
        if time.monotonic() > deadline:
            raise exception.SubstrateError(
                'streaming the layer into %s did not finish in %d s'
                % (disk_path, timeout))
        time.sleep(_POLL_S)
    if qemuimg.backing_file(disk_path) != base:
        raise exception.SubstrateError(
            'after streaming, %s is backed by %s, not %s'
            % (disk_path, qemuimg.backing_file(disk_path), base))


def domain_or_none(conn, domain_uuid):
    try:
        return conn.lookupByUUIDString(domain_uuid)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
