"""What makes two instances clones of one substrate, and which flavors ask.

A substrate key names everything that shapes an instance's domain and its
disk: the image (its id and properties) and the flavor's size and extra
specs. Instances with equal keys get the same domain XML from
LibvirtDriver on a given host, so a clone of the key's substrate is ABI
compatible with them. The driver docks substrates under their key, and
the scheduler computes the same key from a request to find hosts that
hold one; both use this module and nothing else.
"""

import hashlib
import json

from oslo_utils import strutils

SPEC_PREFIX = 'substrate:'
ENABLED = SPEC_PREFIX + 'enabled'
FALLBACK = SPEC_PREFIX + 'fallback'
#: Every substrate extra spec and whether it defaults to true.
SPECS = {ENABLED: False, FALLBACK: True}

_KEY_LEN = 32
#: Flavor fields that shape the domain (size) or the disks.
_FLAVOR_FIELDS = ('memory_mb', 'vcpus', 'root_gb', 'ephemeral_gb', 'swap')


def _bool_spec(flavor, name):
    value = (flavor.extra_specs or {}).get(name)
    if value is None:
        return SPECS[name]
    return strutils.bool_from_string(value, strict=True)


def wants_substrate(flavor):
    """Does the flavor ask for activation from a substrate?"""
    return _bool_spec(flavor, ENABLED)


def fallback_allowed(flavor):
    """May a substrate flavor's instance boot normally when none is held?"""
    return _bool_spec(flavor, FALLBACK)


def image_properties(image_meta):
    """The image's properties as plain, JSON-able values."""
    # The set fields of a versioned object are its '_obj_<name>'
    # attributes: reading them directly spares asking each of the
    # ~200 property fields whether it is set (scheduler hot path).
    return {name[5:]: _plain(value)
            for name, value in sorted(vars(image_meta.properties).items())
            if name.startswith('_obj_')}


def _plain(value):
    if hasattr(value, 'obj_to_primitive'):
        return value.obj_to_primitive()
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, bool, type(None))) \
        else str(value)


def image_document(image_meta):
    """The image's part of a key: a changed image has a different one."""
    return {'id': image_meta.id, 'properties': image_properties(image_meta)}


def key_document(image_meta, flavor):
    """What the key hashes, for logs and for the pool's labels."""
    return {
        'image': image_document(image_meta),
        'flavor': dict(
            {f: getattr(flavor, f) for f in _FLAVOR_FIELDS},
            extra_specs={k: v for k, v in
                         sorted((flavor.extra_specs or {}).items())
                         if not k.startswith(SPEC_PREFIX)}),
    }


def substrate_key(image_meta, flavor):
    """The substrate key of instances of image_meta on flavor."""
    doc = json.dumps(key_document(image_meta, flavor), sort_keys=True,
                     default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:_KEY_LEN]
