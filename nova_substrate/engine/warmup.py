"""Warming an image cache by booting the image once.

A throwaway domain boots from an overlay on the cache, with no network,
while copy-on-read fills the cache with what the boot reads. The boot is
over, for the cache, when the cache stops growing: the guest has read
its working set. The domain and its overlay are then removed and the
working set recorded, so later warm-ups can replay it without a guest.

Read errors stop the domain (rerror_policy=stop): a remote base that
goes away mid-boot is seen at once, reported as RemoteUnavailable, and
the half-filled cache is discarded with everything else the warm-up made.
"""

import os
import time
import uuid

import libvirt
from oslo_log import log as logging

from nova_substrate.engine import cacheserver
from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from nova_substrate.engine import imagecache
from nova_substrate.engine import qemuimg

LOG = logging.getLogger(__name__)

_POLL_S = 0.25


def _stop_on_errors(root, overlay):
    disk = domainxml.primary_disk(root)
    for source in disk.findall('source'):
        source.set('file', overlay)
    driver = disk.find('driver')
    driver.set('error_policy', 'stop')
    driver.set('rerror_policy', 'stop')


def _paused_by_io_error(dom):
    state, reason = dom.state()
    return (state == libvirt.VIR_DOMAIN_PAUSED and
            reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR)


def warm_by_boot(conn, manager, cache, domain_xml, work_dir, idle_s,
                 timeout):
    """Boot domain_xml's guest on the cache until its reads settle.

    domain_xml is the image's domain as an instance would run it; its
    root disk is replaced by an overlay on the cache, its name and uuid
    by throwaway ones. Returns the recorded working set.
    """
    name = 'substrate-warmup-%s' % uuid.uuid4().hex[:12]
    overlay = os.path.join(work_dir, name + '.qcow2')
    root = domainxml.parse(domain_xml)
    domainxml._set_text(root, 'name', name)
    domainxml._set_uuid(root, str(uuid.uuid4()))
    _stop_on_errors(root, overlay)
    for interface in root.findall('./devices/interface'):
        root.find('devices').remove(interface)

    manager.acquire(cache, name)
    dom = None
    failed = True
    try:
        qemuimg.create_overlay(overlay, cache.link, 'qcow2')
        dom = conn.createXML(domainxml.tostring(root), 0)
        _wait_until_settled(dom, manager, cache, idle_s, timeout)
        failed = False
    finally:
        if dom is not None:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        if os.path.exists(overlay):
            os.unlink(overlay)
        manager.release(name)
        if failed:
            # A half-warm cache of an unreachable remote is of no use.
            try:
                manager.evict(cache.name)
            except imagecache.CacheInUse:
                pass
    return manager.record(cache)


def _wait_until_settled(dom, manager, cache, idle_s, timeout):
    started = time.monotonic()
    deadline = started + timeout
    size = cache.allocated_bytes()
    # Idle time counts from the boot's first read of the disk: firmware
    # and kernel come first and read nothing from it.
    changed = None
    while True:
        time.sleep(_POLL_S)
        manager.check_quotas()
        if _paused_by_io_error(dom):
            raise imagecache.RemoteUnavailable(
                'warm-up boot of image %s stopped on a read error: the '
                'remote base %s is no longer readable'
                % (cache.image_id, cache.state().get('remote_url')))
        if not dom.isActive():
            raise exception.SubstrateError(
                'warm-up boot of image %s ended by itself' % cache.image_id)
        now = time.monotonic()
        current = cache.allocated_bytes()
        if current != size:
            size, changed = current, now
        if cache.sealed or (changed is not None and now - changed >= idle_s):
            # Reads waiting for a remote that went away look idle too.
            _check_remote(cache)
            LOG.info('Warm-up boot of image %s read %d MiB in %.1f s',
                     cache.image_id, size // 2**20, now - started)
            return
        if now > deadline:
            _check_remote(cache)
            LOG.warning('Warm-up boot of image %s still reading after '
                        '%d s; its cache holds %d MiB', cache.image_id,
                        timeout, size // 2**20)
            return


def _check_remote(cache):
    state = cache.state()
    try:
        cacheserver.probe_remote(state['remote_url'], state['format'],
                                 timeout=10)
    except cacheserver.RemoteUnavailable as e:
        raise imagecache.RemoteUnavailable(
            'warm-up boot of image %s: the remote base %s is no longer '
            'readable (%s)' % (cache.image_id, state['remote_url'], e))
