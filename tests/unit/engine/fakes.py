"""Save images made in memory, shaped like the ones libvirt writes."""

import hashlib
import os
import struct
import time

from nova_substrate.engine import saveimage

DOMAIN_XML = """<domain type='qemu'>
  <name>template</name>
  <uuid>00000000-0000-0000-0000-000000000001</uuid>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/layers/build/layer.qcow2'/>
      <backingStore type='file'><source file='/images/base.qcow2'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='/logs/build.log'/></serial>
    <console type='file'><source path='/logs/build.log'/></console>
  </devices>
</domain>"""
COOKIE_XML = "<cookie><slirpHelper/></cookie>"


def make_save_image(path, stream=None, data_len=65536, xml=DOMAIN_XML,
                    cookie=COOKIE_XML):
    """Write a save image to path; returns the stream bytes."""
    if stream is None:
        stream = (saveimage.STREAM_MAGIC +
                  struct.pack('>I', saveimage.STREAM_VERSION) +
                  os.urandom(256 * 1024))
    header = saveimage.SaveImageHeader(saveimage.VERSION, data_len, 1, 0,
                                       xml, cookie)
    with open(path, 'wb') as f:
        f.write(header.pack())
        f.write(stream)
    return stream


def dock(pool, key, labels=None):
    """Dock a template of fake memory state and layer for key in pool."""
    layer_id = pool.new_layer()
    with open(pool.layer_file(layer_id), 'wb') as f:
        f.write(b'layer')
    tmp = pool.tmp_path('.save')
    stream = make_save_image(tmp)
    meta = {'key': key, 'layer_id': layer_id,
            'stream_sha256': hashlib.sha256(stream).hexdigest(),
            'stream_bytes': len(stream), 'memory_mb': 512, 'vcpus': 2,
            'created': time.time(), 'labels': labels or {}}
    return pool.add_template(key, tmp, meta)
