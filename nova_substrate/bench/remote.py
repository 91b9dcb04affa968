"""Remote base image servers, standing for a cloud's image store.

NBDRemote: qemu-storage-daemon exports an image file over NBD on TCP,
optionally through a throttle group (the bandwidth limit), and traces
every read reply it sends; the sum of those replies is the bytes the
remote end served. HTTPRemote: files served over HTTP with byte ranges,
as a web server over Glance's filesystem store would.
"""

import http.server
import os
import re
import socket
import subprocess
import threading
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


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with one byte range, and HEAD: what QEMU's curl driver uses."""

    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def _file(self):
        name = self.path.lstrip('/')
        return self.server.files.get(name)

    def do_HEAD(self):
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(os.path.getsize(path)))
        self.send_header('Accept-Ranges', 'bytes')
        self.end_headers()

    def do_GET(self):
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = os.path.getsize(path)
        match = re.match(r'bytes=(\d+)-(\d*)$', self.headers.get('Range', ''))
        start, end = 0, size - 1
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2) or size - 1), size - 1)
        length = max(end - start + 1, 0)
        with open(path, 'rb') as f:
            f.seek(start)
            data = f.read(length)
        self.send_response(206 if match else 200)
        if match:
            self.send_header('Content-Range',
                             'bytes %d-%d/%d' % (start, end, size))
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Accept-Ranges', 'bytes')
        self.end_headers()
        self.wfile.write(data)
        with self.server.lock:
            self.server.bytes_served += len(data)


class HTTPRemote:
    """Files served over HTTP with byte ranges on 127.0.0.1, by name.

    Like a web server over Glance's filesystem store, where each image is
    a file named by its id.
    """

    SERVER = 'HTTP/1.1 with byte ranges (Python http.server)'

    def __init__(self, files):
        self.files = dict(files)
        self._server = None
        self._thread = None

    def start(self):
        self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                       _RangeHandler)
        self._server.files = self.files
        self._server.bytes_served = 0
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        daemon=True)
        self._thread.start()
        return self

    def url(self, name):
        return 'http://127.0.0.1:%d/%s' % (self._server.server_port, name)

    def bytes_served(self):
        return self._server.bytes_served

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
