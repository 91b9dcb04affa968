"""Small file operations the engine's modules share."""

import contextlib
import fcntl
import os


def unlink_if_exists(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def locked(lock_path):
    """Hold an exclusive flock on lock_path (created 0600) for the block.

    flock, not a lock in this process: the command line and nova-compute
    change the same directories.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
