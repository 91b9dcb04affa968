"""Errors the substrate engine raises.

Every one of them means the engine has already cleaned up after itself:
no half-made domain, overlay or pool file is left behind.
"""


class SubstrateError(Exception):
    """Base class of the engine's errors."""


class SaveImageError(SubstrateError):
    """A save image is truncated, damaged or cannot be re-identified."""


class CorruptSubstrate(SubstrateError):
    """A docked substrate failed its integrity check and was removed."""


class NoSubstrate(SubstrateError):
    """The pool holds no substrate for the requested key."""


class PoolFull(SubstrateError):
    """The memory budget cannot make room for a substrate."""


class BuildError(SubstrateError):
    """A substrate could not be built."""


class ActivationError(SubstrateError):
    """A clone could not be activated."""


class GuestAgentTimeout(SubstrateError):
    """The guest agent or the in-guest hook did not answer in time."""


class GuestCommandFailed(SubstrateError):
    """A command run in the guest through the agent failed."""


class GuestToolsError(SubstrateError):
    """The hook or its helper cannot be prepared on the host."""


class MissingBuildTool(GuestToolsError):
    """The host lacks what the static helper is compiled with."""


class UnsafeCacheDir(GuestToolsError):
    """A cache directory is one another local user could have made."""


class GuestToolsDeliveryFailed(SubstrateError):
    """The hook or its helper could not be installed in a guest.

    path is the guest path that was being written or installed.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path
