"""Substrate keys: what makes a clone ABI-compatible with its template.

A key digests everything that shapes the guest the template saved: the
image (id and checksum), the size it is built for, and whatever else the
caller knows to change the domain XML (extra specs, image properties).
Equal keys mean a clone of one template can become the other's instance.
"""

import hashlib
import json

KEY_LENGTH = 32


def substrate_key(image_id, image_checksum, memory_mb, vcpus, shape=None):
    doc = {
        'image_id': image_id,
        'image_checksum': image_checksum,
        'memory_mb': int(memory_mb),
        'vcpus': int(vcpus),
        'shape': shape or {},
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:KEY_LENGTH]
