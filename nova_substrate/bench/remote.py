"""A remote base image server: an image file exported over NBD.

It stands for the storage network a cloud's compute hosts read images
from. qemu-storage-daemon exports the file over TCP, optionally through a
throttle group (the bandwidth limit), and traces every read reply it
sends; the sum of those replies is the bytes the remote end served.
"""

import os
import re
import socket
import subprocess
import time

from nova_substrate.engine import exception

_SENT = re.compile(r'^nbd_co_send_(?:structured_read|simple_reply) .*'
                   r'len = (\d+)')
_START_TIMEOUT_S = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class NBDRemote:
    """qemu-storage-daemon exporting path read-only on 127.0.0.1."""

    SERVER = 'qemu-storage-daemon (NBD over TCP)'

    def __init__(self, path, work_dir, export='base', bandwidth_mbps=None,
                 port=None):
        self.path = path
        self.export = export
        self.bandwidth_mbps = bandwidth_mbps
        self.port = port or free_port()
        self.trace = os.path.join(work_dir, 'remote-%d.trace' % self.port)
        self._process = None

    @property
    def url(self):
        return 'nbd://127.0.0.1:%d/%s' % (self.port, self.export)

    @property
    def limit(self):
        if not self.bandwidth_mbps:
            return 'none'
        return ('qemu throttle-group, limits.bps-read = %d bytes/s'
                % self._bytes_per_second())

    def _bytes_per_second(self):
        return int(self.bandwidth_mbps * 1e6 / 8)

    def start(self):
        node = 'file'
        args = ['qemu-storage-daemon',
                '--blockdev', 'driver=file,node-name=file,filename=%s,'
                'read-only=on' % self.path]
        if self.bandwidth_mbps:
            args += ['--object', 'throttle-group,id=link,limits.bps-read=%d'
                     % self._bytes_per_second(),
                     '--blockdev', 'driver=throttle,node-name=link,'
                     'throttle-group=link,file=file']
            node = 'link'
        args += ['--nbd-server', 'addr.type=inet,addr.host=127.0.0.1,'
                 'addr.port=%d' % self.port,
                 '--export', 'type=nbd,id=base,node-name=%s,name=%s'
                 % (node, self.export),
                 '--trace', 'nbd_co_send_structured_read',
                 '--trace', 'nbd_co_send_simple_reply']
        with open(self.trace, 'wb') as trace:
            self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                             stderr=trace)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                with open(self.trace) as f:
                    raise exception.SubstrateError(
                        'NBD remote did not start: %s' % f.read().strip())
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise exception.SubstrateError('NBD remote did not listen on port %d'
                                       % self.port)

    def bytes_served(self):
        """Bytes of read replies sent since start."""
        total = 0
        with open(self.trace, errors='replace') as f:
            for line in f:
                match = _SENT.match(line)
                if match:
                    total += int(match.group(1))
        return total

    def stop(self):
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        try:
            os.unlink(self.trace)
        except FileNotFoundError:
            pass
