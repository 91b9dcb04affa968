"""Installing the hook and its helper in a guest, through the agent.

An operator's image then needs only the QEMU guest agent: while the host
builds a substrate it asks the guest which hook it has and, if it has
none, or one of another version, copies the host's hook and static helper
in (guest-file-open, -write, -close) and moves them into place with one
guest-exec. Only the agent is used, not ssh or the disk image, so this
works whatever the guest runs from (an initramfs, a disk, an overlay).
"""

import base64
import contextlib
import posixpath
import time
import uuid

from nova_substrate.engine import exception
from nova_substrate.engine import guest_tools

#: Where the hook runs the helper from (GUESTUTIL in the hook).
GUESTUTIL_PATH = '/usr/sbin/nova-substrate-guestutil'
#: Where the hook finds the resident cloud-init runner (CLOUD_INIT_RUNNER).
CLOUD_INIT_RUNNER_PATH = '/usr/sbin/nova-substrate-cloud-init'

#: Raw bytes per guest-file-write. Their base64 (64 KiB) stays well within
#: the size of message the agent and libvirt accept.
CHUNK_BYTES = 48 * 1024

# Prints the hook's HOOK_VERSION= line if the hook, the helper and the
# cloud-init runner are there and executable, nothing otherwise. Shell
# built-ins only: under TCG every program the guest starts costs tens of
# milliseconds.
_CHECK_SCRIPT = r'''
for f in "$1" "$2" "$3"; do [ -f "$f" ] && [ -x "$f" ] || exit 0; done
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    HOOK_VERSION=*) printf '%s\n' "$line"; exit 0 ;;
    esac
done < "$1"
'''
# Arguments: pairs of temp and target, the hook's last. Each mv is a
# rename, atomic on its own. The hook goes last: its version is what the
# check reads, so a guest left between two renames is given all of them
# again next time.
_INSTALL_SCRIPT = '''
while [ "$#" -ge 2 ]; do
    chmod 0755 "$1" && mv -f "$1" "$2" || exit 1
    shift 2
done
'''
_REMOVE_SCRIPT = 'rm -f "$@"'


def install_guest_tools(agent, hook_path, guestutil_path, tools, deadline):
    """Install the host's hook and helper in the guest unless already there.

    agent is a guest.GuestAgent of a guest whose agent answers; hook_path
    and guestutil_path are paths in the guest; tools is a
    guest_tools.GuestTools; deadline is a time.monotonic() value. Returns
    True if it installed them, False if the guest already had an
    executable helper, cloud-init runner and hook of the host's
    HOOK_VERSION.

    Raises GuestToolsDeliveryFailed naming the guest path concerned (no
    temporary file is left behind, as far as the agent still answers), or
    GuestToolsError if the host cannot provide the files.
    """
    wanted = tools.hook_version()
    if installed_version(agent, hook_path, guestutil_path,
                         deadline) == wanted:
        return False
    # All read before the guest is touched: a host-side failure leaves
    # nothing to clean up in it.
    payload = [
        (guest_tools.read_file(tools.guestutil_binary()), guestutil_path),
        (guest_tools.read_file(tools.cloud_init_runner_source()),
         CLOUD_INIT_RUNNER_PATH),
        (guest_tools.read_file(tools.hook_source()), hook_path),
    ]
    temps = []
    moves = []
    try:
        for data, target in payload:
            temps.append(temp_name(target))
            _write_file(agent, temps[-1], target, data, deadline)
            moves += [temps[-1], target]
        _sh(agent, _INSTALL_SCRIPT, moves, deadline, 'installing',
            hook_path)
    except Exception:
        _remove(agent, temps, deadline)
        raise
    return True


def installed_version(agent, hook_path, guestutil_path, deadline):
    """The HOOK_VERSION of the guest's hook, or None.

    None also when the hook or the helper is missing or not executable:
    either way the guest needs both.
    """
    result = _sh(agent, _CHECK_SCRIPT,
                 [hook_path, guestutil_path, CLOUD_INIT_RUNNER_PATH],
                 deadline, 'checking', hook_path)
    return guest_tools.parse_hook_version(result.stdout)


def temp_name(target):
    """A hidden name beside target: the final rename stays in one dir."""
    directory, name = posixpath.split(target)
    return posixpath.join(directory, '.%s.%s.tmp' % (name,
                                                     uuid.uuid4().hex[:12]))


def _write_file(agent, path, target, data, deadline):
    """Write data to path in the guest (a temporary name of target)."""
    handle = _call(agent, 'guest-file-open', {'path': path, 'mode': 'w'},
                   deadline, 'creating', path, target)
    try:
        for offset in range(0, len(data), CHUNK_BYTES):
            chunk = data[offset:offset + CHUNK_BYTES]
            written = _call(agent, 'guest-file-write',
                            {'handle': handle,
                             'buf-b64': base64.b64encode(chunk).decode()},
                            deadline, 'writing', path, target)
            if written.get('count') != len(chunk):
                raise exception.GuestToolsDeliveryFailed(
                    'the guest wrote %s of %d bytes at offset %d of %s '
                    '(for %s)' % (written.get('count'), len(chunk), offset,
                                  path, target), path=target)
    except Exception:
        # The agent keeps a handle open until it is closed.
        with contextlib.suppress(exception.SubstrateError):
            agent.command('guest-file-close', {'handle': handle},
                          timeout=_timeout(deadline))
        raise
    # The agent reports a failed flush (a full disk) only here.
    _call(agent, 'guest-file-close', {'handle': handle}, deadline,
          'closing', path, target)


def _call(agent, execute, arguments, deadline, doing, path, target):
    try:
        return agent.command(execute, arguments, timeout=_timeout(deadline))
    except exception.SubstrateError as e:
        raise exception.GuestToolsDeliveryFailed(
            '%s %s in the guest (for %s) failed: %s'
            % (doing, path, target, e), path=target) from e


def _sh(agent, script, args, deadline, doing, path):
    """Run script under the guest's /bin/sh with args as $1...; its result.

    The paths go in as arguments, never into the script: nothing needs
    quoting.
    """
    try:
        _timeout(deadline)
        result = agent.run('/bin/sh', ['-c', script, 'sh'] + list(args),
                           deadline=deadline)
    except exception.SubstrateError as e:
        raise exception.GuestToolsDeliveryFailed(
            '%s %s in the guest failed: %s' % (doing, path, e),
            path=path) from e
    if result.exitcode != 0:
        raise exception.GuestToolsDeliveryFailed(
            '%s %s in the guest failed (exit %d): %s'
            % (doing, path, result.exitcode,
               (result.stderr or result.stdout).strip()), path=path)
    return result


def _remove(agent, paths, deadline):
    """Remove paths in the guest, best effort, within the deadline.

    GuestAgent gives each call at least a second, so this still tries
    when a failure came at the deadline itself.
    """
    if not paths:
        return
    with contextlib.suppress(exception.SubstrateError):
        agent.run('/bin/sh', ['-c', _REMOVE_SCRIPT, 'sh'] + list(paths),
                  deadline=deadline)


def _timeout(deadline):
    """What is left of deadline for one agent call; raise if nothing."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise exception.GuestAgentTimeout('out of time for the guest agent')
    return left
