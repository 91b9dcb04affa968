"""qemu-img, for the few disk operations the engine needs."""

import json
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


def create_overlay(path, backing, backing_format):
    """A new qcow2 at path whose reads fall through to backing."""
    _run(['create', '-q', '-f', 'qcow2', '-F', backing_format, '-b', backing,
          path])
