"""qemu-img, for the few disk operations the engine needs."""

import json
import os
import subprocess

from nova_substrate.engine import exception


def _run(args):
    try:
        return subprocess.run(['qemu-img'] + args, check=True,
                              capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise exception.SubstrateError('qemu-img is not installed '
                                       '(Debian package qemu-utils)')
    except subprocess.CalledProcessError as e:
        raise exception.SubstrateError('qemu-img %s failed: %s'
                                       % (args[0], e.stderr.strip()))


def info(path):
    return json.loads(_run(['info', '--output=json', '-U', path]))


def create_overlay(path, backing, backing_format, size=None,
                   cluster_size=None):
    """A new qcow2 at path whose reads fall through to backing.

    With the virtual size known, qemu-img need not open the backing chain
    (-u), which keeps this off the activation's critical path.
    """
    args = ['create', '-q', '-f', 'qcow2', '-F', backing_format, '-b',
            backing]
    if cluster_size:
        args += ['-o', 'cluster_size=%d' % cluster_size]
    if size is not None:
        args += ['-u', path, str(size)]
    else:
        args.append(path)
    _run(args)
    # The overlay will hold the instance's writes: root only. libvirt
    # hands it to QEMU's user while the domain runs.
    os.chmod(path, 0o600)


def backing_file(path):
    """The backing file qcow2 image path names, or None."""
    return info(path).get('full-backing-filename')


def rebase(path, backing, backing_format):
    """Make backing the image's backing file, keeping what it reads.

    Safe mode: every cluster that differs between the old and the new
    chain is copied into the image first. The image must not be in use.
    With backing None the image becomes complete, with no backing file.
    """
    if backing is None:
        _run(['rebase', '-q', '-f', 'qcow2', '-b', '', path])
        return
    _run(['rebase', '-q', '-f', 'qcow2', '-F', backing_format, '-b',
          backing, path])
