"""nova-substrate's test guests, built on demand and cached.

    from nova_substrate import guests
    image = guests.get_guest('tiny')      # or 'debian', 'cloud'
    image.kernel, image.initrd, image.disk, image.cmdline

tiny and debian boot the host's Debian cloud kernel directly (no boot
loader); cloud boots from its disk (kernel, initrd and cmdline None).
All carry the activation hook (guest/nova-substrate-hook) and its
helper, so they can be generalized, saved and activated like an
operator's image:

- tiny: a busybox initrd with the virtio drivers, the QEMU guest agent
  and ssh-keygen; its disk is a 64 MiB ext4 filesystem mounted at /mnt.
- debian: Debian 12 (minbase, systemd, udev, OpenSSH, ifupdown) on a
  2 GiB ext4 disk, booted with the host's initrd.
- cloud: a Debian 12 cloud image made as Debian makes them: GRUB, its
  own cloud kernel and initramfs on a partitioned 2 GiB disk, and
  cloud-init, which makes the user debian, the keys and the hostname at
  first boot from a config drive or a NoCloud seed.

A guest is rebuilt when anything that goes into it changes: the build
code, the hook and helper sources, the host kernel, the host binaries
copied into the tiny guest, the host's GRUB and the cloud guest's
package list.
"""

from oslo_log import log as logging

from nova_substrate.guests import base
from nova_substrate.guests import cache
from nova_substrate.guests import cloud
from nova_substrate.guests import debian
from nova_substrate.guests import tiny

LOG = logging.getLogger(__name__)

GuestImage = base.GuestImage
GuestBuildError = base.GuestBuildError
MissingPrerequisite = base.MissingPrerequisite
default_cache_dir = cache.default_cache_dir

_RECIPES = {
    tiny.NAME: tiny.TinyRecipe,
    debian.NAME: debian.DebianRecipe,
    cloud.NAME: cloud.CloudRecipe,
}
GUEST_NAMES = tuple(sorted(_RECIPES))


def _log_progress(message):
    LOG.info('%s', message)


def get_guest(name, cache_dir=None, progress=None):
    """The named test guest as a GuestImage, built if not cached yet.

    cache_dir defaults to $NOVA_SUBSTRATE_GUEST_CACHE, else
    /var/cache/nova-substrate/guests. progress, if given, is called with
    a line of text at each long step of a build.

    Raises MissingPrerequisite (naming the Debian package to install)
    or GuestBuildError.
    """
    try:
        recipe = _RECIPES[name]()
    except KeyError:
        raise ValueError('unknown test guest %r; known: %s'
                         % (name, ', '.join(GUEST_NAMES)))
    recipe.check_prerequisites()
    guest_cache = cache.GuestCache(cache_dir or default_cache_dir())
    return guest_cache.get(recipe, progress or _log_progress)
