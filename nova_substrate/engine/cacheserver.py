"""The storage daemon that serves one image cache to instances.

One qemu-storage-daemon per cache holds the chain

    remote base (NBD or HTTP, read lazily)
      <- cache.qcow2 (this host's cache of the image)
      <- copy-on-read filter (while the cache is below its quota)
      <- "top": a pass-through filter (an unlimited throttle), what
         instances' overlays read, exported over NBD on a unix socket
         only QEMU's group may open.

Instances' overlays never write below themselves, so every QEMU on the
host shares one cache. Only this daemon writes the cache: copy-on-read
copies each block the first boot reads from the remote base into it.
Sealing moves "top" onto the cache itself (a live blockdev-reopen): the
copy-on-read filter leaves the read path, and the cache stops growing.
"top" must be a filter: block status then looks through the cache into
the remote base, and the export reports the image's data as data. (A
format node there would report the cache's unallocated clusters as
holes, and a block stream or an image compare through the export would
take them for zeros.)

A second monitor carries the write-threshold event on the cache file
(block-set-write-threshold): the quota watcher seals the cache as soon as
copy-on-read writes past the quota's threshold.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

from nova_substrate.engine import exception
from nova_substrate.engine import files
from nova_substrate.engine import qmp

PROTOCOL_NODE = 'remote-protocol'
REMOTE_NODE = 'remote'
CACHE_NODE = 'cache'
CACHE_FILE_NODE = 'cache-file'
COR_NODE = 'copy-on-read'
TOP_NODE = 'top'
PASS_THROUGH_GROUP = 'pass-through'
WRITE_THRESHOLD_EVENT = 'BLOCK_WRITE_THRESHOLD'
EXPORT_ID = 'serve'
BULK_EXPORT_ID = 'bulk'

_STOP_WAIT_S = 10.0
# A remote that drops the connection gets this long to come back before
# reads fail: a storage network's blip does not fail every instance.
REMOTE_RECONNECT_S = 5


class RemoteUnavailable(exception.SubstrateError):
    """The remote base image cannot be read."""


def _protocol_blockdev(url):
    """The blockdev options for reading url (nbd://, nbd+unix://, http)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ('http', 'https'):
        return {'driver': parts.scheme, 'url': url, 'read-only': True}
    export = parts.path.lstrip('/')
    if parts.scheme == 'nbd':
        server = {'type': 'inet', 'host': parts.hostname,
                  'port': str(parts.port or 10809)}
    elif parts.scheme == 'nbd+unix':
        socket_path = urllib.parse.parse_qs(parts.query).get('socket')
        if not socket_path:
            raise exception.SubstrateError('%s names no socket' % url)
        server = {'type': 'unix', 'path': socket_path[0]}
    else:
        raise exception.SubstrateError('no remote protocol for %s' % url)
    return {'driver': 'nbd', 'server': server, 'export': export,
            'reconnect-delay': REMOTE_RECONNECT_S, 'read-only': True}


def remote_blockdev(url, image_format):
    """The remote base: the protocol, with qcow2 read through it."""
    protocol = _protocol_blockdev(url)
    if image_format == 'raw':
        return dict(protocol, **{'node-name': REMOTE_NODE})
    return {'driver': image_format, 'node-name': REMOTE_NODE,
            'read-only': True,
            'file': dict(protocol, **{'node-name': PROTOCOL_NODE})}


def probe_remote(url, image_format, timeout=30.0):
    """The remote base's virtual size; RemoteUnavailable if unreadable."""
    spec = 'json:' + json.dumps(remote_blockdev(url, image_format))
    try:
        out = subprocess.run(['qemu-img', 'info', '--output=json', spec],
                             check=True, capture_output=True, text=True,
                             timeout=timeout).stdout
    except subprocess.CalledProcessError as e:
        raise RemoteUnavailable('remote base %s (%s) cannot be read: %s'
                                % (url, image_format, e.stderr.strip()))
    except subprocess.TimeoutExpired:
        raise RemoteUnavailable('remote base %s did not answer in %d s'
                                % (url, timeout))
    return json.loads(out)['virtual-size']


class CacheServer:
    """The daemon of one cache directory."""

    def __init__(self, directory, export_name):
        self.directory = directory
        self.export_name = export_name
        self.socket = os.path.join(directory, 'serve.sock')
        self.monitor = os.path.join(directory, 'qmp.sock')
        self.event_monitor = os.path.join(directory, 'events.sock')
        self.pidfile = os.path.join(directory, 'daemon.pid')
        self.log = os.path.join(directory, 'daemon.log')

    @property
    def url(self):
        return 'nbd+unix:///%s?socket=%s' % (self.export_name, self.socket)

    @property
    def bulk_url(self):
        """The same image without copy-on-read, for whole-image reads."""
        return 'nbd+unix:///%s-bulk?socket=%s' % (self.export_name,
                                                  self.socket)

    def pid(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def running(self):
        return self.pid() is not None and os.path.exists(self.socket)

    def start(self, cache_file, remote_url, image_format, copy_on_read,
              socket_group):
        """Start serving; RemoteUnavailable if the remote base is not."""
        for stale in (self.socket, self.monitor, self.event_monitor,
                      self.pidfile):
            files.unlink_if_exists(stale)
        top_file = COR_NODE if copy_on_read else CACHE_NODE
        args = [
            'qemu-storage-daemon',
            '--blockdev', json.dumps(remote_blockdev(remote_url,
                                                     image_format)),
            '--blockdev', json.dumps({
                'driver': 'qcow2', 'node-name': CACHE_NODE,
                'file': {'driver': 'file', 'node-name': CACHE_FILE_NODE,
                         'filename': cache_file},
                'backing': REMOTE_NODE}),
            '--blockdev', json.dumps({'driver': 'copy-on-read',
                                      'node-name': COR_NODE,
                                      'file': CACHE_NODE}),
            '--object', 'throttle-group,id=%s' % PASS_THROUGH_GROUP,
            '--blockdev', json.dumps(self._top(top_file)),
            '--nbd-server', 'addr.type=unix,addr.path=%s' % self.socket,
            '--export', 'type=nbd,id=%s,node-name=%s,name=%s,writable=off'
            % (EXPORT_ID, TOP_NODE, self.export_name),
            # The cache node itself: block status follows its backing into
            # the remote, and reads copy nothing.
            '--export', 'type=nbd,id=%s,node-name=%s,name=%s-bulk,'
            'writable=off' % (BULK_EXPORT_ID, CACHE_NODE, self.export_name),
            '--chardev', 'socket,id=monitor,path=%s,server=on,wait=off'
            % self.monitor,
            '--monitor', 'chardev=monitor',
            '--chardev', 'socket,id=events,path=%s,server=on,wait=off'
            % self.event_monitor,
            '--monitor', 'chardev=events',
            '--pidfile', self.pidfile,
            '--daemonize',
        ]
        # Outside nova-compute's cgroup where systemd runs: instances read
        # through this daemon, so it must outlive a nova-compute restart.
        if os.path.isdir('/run/systemd/system') and shutil.which(
                'systemd-run'):
            args = ['systemd-run', '--quiet', '--scope', '--collect',
                    '--description=nova-substrate image cache %s'
                    % self.export_name] + args
        with open(self.log, 'ab') as log:
            result = subprocess.run(args, stdout=log,
                                    stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        if result.returncode:
            message = result.stderr.strip()
            if PROTOCOL_NODE in message or REMOTE_NODE in message or (
                    'nbd' in message.lower() or 'curl' in message.lower()):
                raise RemoteUnavailable(
                    'remote base %s cannot be read: %s'
                    % (remote_url, message))
            raise exception.SubstrateError(
                'qemu-storage-daemon for %s did not start: %s'
                % (self.export_name, message))
        os.chown(self.socket, -1, socket_group)
        os.chmod(self.socket, 0o660)

    @staticmethod
    def _top(file_node):
        return {'driver': 'throttle', 'node-name': TOP_NODE,
                'throttle-group': PASS_THROUGH_GROUP, 'file': file_node}

    def seal(self):
        """Take copy-on-read out of the read path, live."""
        qmp.QMPClient(self.monitor).execute(
            'blockdev-reopen', options=[self._top(CACHE_NODE)])
        self.flush()

    def watch_writes_past(self, threshold):
        """A monitor connection that will carry WRITE_THRESHOLD_EVENT."""
        events = qmp.QMPConnection(self.event_monitor)
        try:
            events.execute('block-set-write-threshold',
                           **{'node-name': CACHE_FILE_NODE,
                              'write-threshold': int(threshold)})
        except qmp.QMPError:
            events.close()
            raise
        return events

    def flush(self):
        """Write the cache's metadata out, so others can map it.

        A reopen flushes the node first; reopening it unchanged is the
        storage daemon's way to flush one node.
        """
        qmp.QMPClient(self.monitor).execute(
            'blockdev-reopen', options=[{'driver': 'qcow2',
                                         'node-name': CACHE_NODE,
                                         'file': CACHE_FILE_NODE,
                                         'backing': REMOTE_NODE}])

    def stop(self):
        pid = self.pid()
        if pid is not None:
            try:
                qmp.QMPClient(self.monitor, timeout=2).execute('quit')
            except qmp.QMPError:
                _kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_WAIT_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                _kill(pid, signal.SIGKILL)
        for path in (self.socket, self.monitor, self.event_monitor,
                     self.pidfile):
            files.unlink_if_exists(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A daemonized child of ours lingers as a zombie until reaped.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(') ', 1)[1][0] != 'Z'
    except (OSError, IndexError):
        return False


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass
