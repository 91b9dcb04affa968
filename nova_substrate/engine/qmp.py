"""A minimal QMP client, for the QEMU processes the engine runs itself.

libvirt speaks QMP to the QEMUs of domains; the storage daemons that
serve image caches are the engine's own and are spoken to here.
"""

import json
import socket

from nova_substrate.engine import exception


class QMPError(exception.SubstrateError):
    """A QMP command failed or the monitor could not be reached."""


class QMPClient:
    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout

    def execute(self, command, **arguments):
        """Run one command on a fresh connection; its "return" value."""
        request = {'execute': command}
        if arguments:
            request['arguments'] = arguments
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                stream = sock.makefile('rw', encoding='utf-8')
                self._read_reply(stream)  # the greeting
                self._send(stream, {'execute': 'qmp_capabilities'})
                self._read_reply(stream)
                self._send(stream, request)
                reply = self._read_reply(stream)
        except OSError as e:
            raise QMPError('QMP monitor %s: %s' % (self.path, e))
        if 'error' in reply:
            raise QMPError('QMP %s on %s failed: %s'
                           % (command, self.path, reply['error'].get('desc')))
        return reply.get('return')

    @staticmethod
    def _send(stream, message):
        stream.write(json.dumps(message) + '\n')
        stream.flush()

    @staticmethod
    def _read_reply(stream):
        while True:
            line = stream.readline()
            if not line:
                raise OSError('monitor closed the connection')
            message = json.loads(line)
            # Events can arrive between replies; they are not answers.
            if 'event' not in message:
                return message
