"""OpenStack config drives for test guests booted outside Nova.

Made as Nova makes them (genisoimage, volume label config-2), from files
in a config drive's layout (relative path to bytes), and attached as a
read-only CD-ROM on virtio-scsi: Debian's cloud kernel has no AHCI driver,
so a SATA CD-ROM (q35's default bus) is invisible to it.
"""

import os
import shutil
import subprocess
import tempfile
from xml.sax import saxutils

from nova_substrate.engine import exception

CONFIG_DRIVE_LABEL = 'config-2'
CONFIG_DRIVE_DEVICES = (
    "<controller type='scsi' index='0' model='virtio-scsi'/>",
    "<disk type='file' device='cdrom'>"
    "<driver name='qemu' type='raw'/><source file=%s/>"
    "<target dev='sda' bus='scsi'/><readonly/></disk>")


def genisoimage_argv(iso_path, top):
    """The genisoimage command Nova makes its config drives with."""
    return ['genisoimage', '-o', iso_path, '-ldots', '-allow-lowercase',
            '-allow-multidot', '-l', '-quiet', '-J', '-r', '-V',
            CONFIG_DRIVE_LABEL, top]


def make_config_drive(files, iso_path, scratch_dir):
    """Write files (config_drive_files) to a config drive ISO at iso_path."""
    top = tempfile.mkdtemp(prefix='config-drive-', dir=scratch_dir)
    try:
        for relative, data in files.items():
            path = os.path.join(top, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)
        try:
            subprocess.run(genisoimage_argv(iso_path, top), check=True,
                           capture_output=True, text=True)
        except FileNotFoundError:
            raise exception.SubstrateError(
                'making a config drive needs genisoimage (Debian package '
                'genisoimage)')
        except subprocess.CalledProcessError as e:
            raise exception.SubstrateError('genisoimage failed: %s'
                                           % e.stderr.strip())
        # QEMU runs as libvirt-qemu.
        os.chmod(iso_path, 0o644)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def config_drive_devices(iso_path):
    """<devices> elements that attach the ISO as a read-only cdrom."""
    return [CONFIG_DRIVE_DEVICES[0],
            CONFIG_DRIVE_DEVICES[1] % saxutils.quoteattr(str(iso_path))]
