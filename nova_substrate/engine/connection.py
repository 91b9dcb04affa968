"""A libvirt connection for the engine when it runs outside nova-compute."""

import libvirt

from nova_substrate.engine import exception


def _quiet(_ctx, _error):
    """libvirt's default handler prints every error to stderr.

    The engine sees each one as an exception and reports it there.
    """


def open_connection(uri):
    libvirt.registerErrorHandler(_quiet, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise exception.SubstrateError(
            'cannot connect to libvirt at %s (is libvirtd running?): %s'
            % (uri, e))
