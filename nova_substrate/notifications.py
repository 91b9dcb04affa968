"""What operators see of each spawn with a substrate flavor.

Every such spawn ends in one record: activated (from which substrate, in
how long, with the activation's phases) or booted (and why: no substrate,
not eligible, or the activation failed and the instance fell back). The
record goes out as an oslo.messaging notification through Nova's
notifier (publisher ``substrate.<host>``) and is appended to the host's
activation log, which ``nova-substrate activations`` reads.

Event types:

``substrate.activate.end``
    The instance was activated from a substrate.
``substrate.activate.error``
    An activation failed; the instance was then booted normally (its
    ``substrate.boot.end`` follows).
``substrate.boot.end``
    The instance was booted normally.
"""

import json
import os
import threading
import time

from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

ACTIVATED = 'activated'
BOOTED = 'booted'

ACTIVATE_END = 'substrate.activate.end'
ACTIVATE_ERROR = 'substrate.activate.error'
BOOT_END = 'substrate.boot.end'

#: Instance system metadata recording how the instance was spawned.
SYSMETA_MODE = 'substrate_spawn'
SYSMETA_SECONDS = 'substrate_spawn_s'


_notifiers = {}


def _notifier(host):
    """An oslo.messaging notifier on nova-compute's notification transport.

    Driver and topics are [oslo_messaging_notifications]'s, as for Nova's
    own notifications. Nova's notifier is not used: it only lets through
    event types Nova itself defines.
    """
    # Imported here: the command line reads the activation log without
    # loading the messaging stack.
    from nova import rpc    # the transport nova-compute set up
    import oslo_messaging as messaging
    transport = rpc.NOTIFICATION_TRANSPORT
    if transport is None:
        if None not in _notifiers:
            _notifiers[None] = messaging.get_notification_transport(cfg.CONF)
        transport = _notifiers[None]
    # Keyed by transport too: a process whose transport is set up again
    # (a restarted service, a test) gets a notifier on the new one.
    cache_key = (id(transport), host)
    if cache_key not in _notifiers:
        _notifiers[cache_key] = messaging.Notifier(
            transport, publisher_id='substrate.%s' % host)
    return _notifiers[cache_key]


def notify(context, host, event_type, payload):
    """Send one notification; a notifier that is down never fails a spawn."""
    try:
        _notifier(host).info(context, event_type, payload)
    except Exception:
        LOG.exception('Could not send the %s notification', event_type)


def report_spawn(context, activation_log, instance, key, seconds,
                 timings=None, error=None, reason=None):
    """Notify, log and record on the instance how it was spawned.

    timings (the activation's phases) means it was activated; otherwise
    it was booted, because of error (an activation that failed) or reason.
    """
    host = instance.host
    record = {
        'time': time.time(),
        'instance_uuid': instance.uuid,
        'host': host,
        'key': key,
        'image_id': instance.image_ref,
        'flavor': instance.flavor.name,
        'seconds': round(seconds, 3),
    }
    if timings is not None:
        record.update(mode=ACTIVATED, timings=timings)
        notify(context, host, ACTIVATE_END, record)
    else:
        if error is not None:
            reason = 'activation failed: %s' % error
            notify(context, host, ACTIVATE_ERROR, dict(record,
                                                       error=str(error)))
        record.update(mode=BOOTED, reason=reason)
        notify(context, host, BOOT_END, record)
    # Saved with the instance when the compute manager saves it as ACTIVE.
    instance.system_metadata[SYSMETA_MODE] = record['mode']
    instance.system_metadata[SYSMETA_SECONDS] = '%.3f' % seconds
    try:
        activation_log.append(record)
    except OSError as e:
        LOG.warning('Could not record the spawn in %s: %s',
                    activation_log.path, e, instance=instance)
    LOG.info('Instance %s in %.3f s%s', record['mode'], seconds,
             '' if timings is not None else ' (%s)' % reason,
             instance=instance)
    return record


class ActivationLog(object):
    """An append-only JSON-lines file of spawn records, mode 0600."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()

    def append(self, record):
        line = json.dumps(record, sort_keys=True) + '\n'
        with self._lock:
            os.makedirs(os.path.dirname(self.path), mode=0o700,
                        exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                         0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def read(self, limit=None):
        """The records, oldest first; the last limit ones if given."""
        try:
            with open(self.path) as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines[-limit:] if limit else lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue    # a line cut short by a crash
        return records
