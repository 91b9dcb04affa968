"""The instance data an activation hands to the guest, as a tar."""

import io
import tarfile

import testtools

from nova_substrate.engine import activate
from nova_substrate.engine import exception


class InstanceDataTarTest(testtools.TestCase):

    def members(self, files):
        data = activate.instance_data_tar(files)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name: (m.type, m.mode, m.uid, m.gid,
                             tar.extractfile(m).read() if m.isfile() else None)
                    for m in tar.getmembers()}

    def test_config_drive_layout_root_only(self):
        members = self.members({
            'openstack/latest/meta_data.json': b'{"uuid": "u"}',
            'openstack/latest/user_data': '#cloud-config\n',
        })
        self.assertEqual({
            'openstack': (tarfile.DIRTYPE, 0o700, 0, 0, None),
            'openstack/latest': (tarfile.DIRTYPE, 0o700, 0, 0, None),
            'openstack/latest/meta_data.json': (
                tarfile.REGTYPE, 0o600, 0, 0, b'{"uuid": "u"}'),
            'openstack/latest/user_data': (
                tarfile.REGTYPE, 0o600, 0, 0, b'#cloud-config\n'),
        }, members)

    def test_refuses_paths_leaving_the_directory(self):
        for bad in ('/etc/shadow', '../x', 'openstack/../../x', 'a//b'):
            self.assertRaises(exception.ActivationError,
                              activate.instance_data_tar, {bad: b''})
