"""The conversation with a guest through the QEMU guest agent.

Everything the host asks of a substrate guest goes through the agent's
guest-exec: the in-guest hook (guest/nova-substrate-hook) does the work,
and the host only starts it and reads its answer. Every wait is bounded.
"""

import base64
import json
import time

import libvirt
import libvirt_qemu

from nova_substrate.engine import exception

# Per-call agent timeout when the caller has no deadline. With one, each
# call may use what is left of it: a call that times out leaves libvirt's
# agent connection unusable ("not available for now") until the guest
# answers again, so a busy guest is better waited for than given up on.
_CALL_TIMEOUT_S = 10
# guest-exec-status is polled from fast to slow: a hook that answers in
# 20 ms should not wait 50 ms to be noticed.
_POLL_START_S = 0.002
_POLL_MAX_S = 0.025


class ExecResult(object):

    def __init__(self, exitcode, stdout, stderr):
        self.exitcode = exitcode
        self.stdout = stdout
        self.stderr = stderr

    def json(self):
        """The last line of stdout, parsed as JSON."""
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        if not lines:
            raise exception.GuestCommandFailed('guest command printed '
                                               'nothing; stderr: %s'
                                               % self.stderr.strip())
        try:
            return json.loads(lines[-1])
        except ValueError:
            raise exception.GuestCommandFailed(
                'guest command printed no JSON: %r' % lines[-1])


class GuestAgent(object):

    def __init__(self, domain):
        self.domain = domain

    def command(self, execute, arguments=None, timeout=_CALL_TIMEOUT_S):
        cmd = {'execute': execute}
        if arguments is not None:
            cmd['arguments'] = arguments
        try:
            out = libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(cmd),
                                                max(1, int(timeout)), 0)
        except libvirt.libvirtError as e:
            raise exception.GuestCommandFailed('guest agent %s failed: %s'
                                               % (execute, e))
        return json.loads(out).get('return')

    def wait_ready(self, deadline):
        """Wait until the agent answers a ping, or raise at deadline.

        After a restore libvirt connects to the agent only when QEMU
        reports the guest's end of the channel open, shortly after the
        guest resumes: poll briskly, an unconnected agent fails at once.
        """
        delay = 0.005
        last = None
        while True:
            try:
                self.command('guest-ping', timeout=_remaining(deadline))
                return
            except exception.GuestCommandFailed as e:
                last = e
            if time.monotonic() >= deadline:
                raise exception.GuestAgentTimeout(
                    'guest agent did not answer: %s' % last)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def wait_booted(self, hook_path, deadline):
        """Wait until the agent answers and the hook says booted."""
        self.wait_ready(deadline)
        while not self.hook(hook_path, 'status',
                            deadline=deadline).get('ready'):
            if time.monotonic() >= deadline:
                raise exception.GuestAgentTimeout(
                    'guest did not finish booting')
            time.sleep(0.05)

    def run(self, path, args=(), stdin=None, deadline=None):
        """Run path in the guest and wait for it, until deadline.

        Returns an ExecResult. A command still running at the deadline is
        left to the guest and reported as GuestAgentTimeout.
        """
        arguments = {'path': path, 'arg': list(args),
                     'capture-output': True}
        if stdin is not None:
            if isinstance(stdin, str):
                stdin = stdin.encode('utf-8')
            arguments['input-data'] = base64.b64encode(stdin).decode('ascii')
        pid = self.command('guest-exec', arguments,
                           timeout=_remaining(deadline))['pid']
        delay = _POLL_START_S
        while True:
            status = self.command('guest-exec-status', {'pid': pid},
                                  timeout=_remaining(deadline))
            if status.get('exited'):
                return ExecResult(
                    status.get('exitcode', -1),
                    _b64(status.get('out-data')),
                    _b64(status.get('err-data')))
            if deadline is not None and time.monotonic() >= deadline:
                raise exception.GuestAgentTimeout(
                    '%s %s did not finish in the guest in time'
                    % (path, ' '.join(args)))
            time.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)

    def hook(self, hook_path, subcommand, fields=None, deadline=None,
             accept=(0,), tail=None):
        """Run the in-guest hook and return its JSON answer.

        fields are its key=value input lines: a dict, or (key, value)
        pairs where a key repeats. tail, if given, follows them.
        """
        stdin = None
        if fields is not None:
            pairs = fields.items() if isinstance(fields, dict) else fields
            stdin = ''.join('%s=%s\n' % (k, v) for k, v in pairs)
        if tail is not None:
            stdin = (stdin or '') + tail
        result = self.run(hook_path, [subcommand], stdin=stdin,
                          deadline=deadline)
        if result.exitcode not in accept:
            raise exception.GuestCommandFailed(
                'hook %s exited %d: %s %s' % (
                    subcommand, result.exitcode, result.stdout.strip(),
                    result.stderr.strip()))
        return result.json()


def _remaining(deadline):
    if deadline is None:
        return _CALL_TIMEOUT_S
    return max(1, deadline - time.monotonic())


def _b64(data):
    if not data:
        return ''
    return base64.b64decode(data).decode('utf-8', 'replace')
