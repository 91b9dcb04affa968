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


class QMPConnection:
    """A connection kept open, for events; fileno() serves select()."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(path)
            self._stream = self._sock.makefile('rw', encoding='utf-8')
            QMPClient._read_reply(self._stream)
            self.execute('qmp_capabilities')
        except OSError as e:
            self._sock.close()
            raise QMPError('QMP monitor %s: %s' % (path, e))
        self.events = []

    def fileno(self):
        return self._sock.fileno()

    def execute(self, command, **arguments):
        request = {'execute': command}
        if arguments:
            request['arguments'] = arguments
        try:
            QMPClient._send(self._stream, request)
            while True:
                line = self._stream.readline()
                if not line:
                    raise OSError('monitor closed the connection')
                message = json.loads(line)
                if 'event' in message:
                    self.events.append(message)
                    continue
                break
        except OSError as e:
            raise QMPError('QMP %s on %s: %s' % (command, self.path, e))
        if 'error' in message:
            raise QMPError('QMP %s on %s failed: %s'
                           % (command, self.path,
                              message['error'].get('desc')))
        return message.get('return')

    def read_events(self):
        """Events that arrived (call when select() says readable).

        Raises QMPError when the monitor went away.
        """
        line = self._stream.readline()
        if not line:
            raise QMPError('QMP monitor %s closed' % self.path)
        message = json.loads(line)
        if 'event' in message:
            self.events.append(message)
        events, self.events = self.events, []
        return events

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass
