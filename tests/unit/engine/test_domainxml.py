"""Domain XML: a build is miniaturized, a clone re-identified."""

from xml.etree import ElementTree as ET

import testtools

from nova_substrate.engine import domainxml
from nova_substrate.engine import exception
from tests.unit.engine import fakes

INSTANCE_XML = """<domain type='qemu'>
  <name>instance-1</name><uuid>11111111-1111-1111-1111-111111111111</uuid>
  <memory unit='MiB'>512</memory><vcpu>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='cdrom'><source file='/cd.iso'/></disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/base.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'><mac address='52:54:00:00:00:01'/></interface>
    <serial type='pty'><log file='/inst/console.log' append='off'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


class MiniaturizeTest(testtools.TestCase):

    def miniaturize(self, xml=INSTANCE_XML):
        return ET.fromstring(domainxml.miniaturize(
            xml, name='substrate-x', uuid='u-1', memory_mb=512, vcpus=2,
            build_memory_mb=128, spare_ports=4, disk_path='/layers/l.qcow2',
            console_log='/build.log'))

    def test_small_now_full_size_later(self):
        root = self.miniaturize()
        self.assertEqual('524288', root.find('memory').text)
        self.assertEqual('131072', root.find('currentMemory').text)
        self.assertEqual('2', root.find('vcpu').text)
        self.assertEqual('1', root.find('vcpu').get('current'))

    def test_identity_disk_and_log(self):
        root = self.miniaturize()
        self.assertEqual('substrate-x', root.find('name').text)
        self.assertEqual('u-1', root.find('uuid').text)
        disk = domainxml.primary_disk(root)
        self.assertEqual('/layers/l.qcow2', disk.find('source').get('file'))
        self.assertEqual('/build.log',
                         root.find('./devices/serial/log').get('file'))

    def test_no_nics_spare_ports_agent_and_balloon(self):
        devices = self.miniaturize().find('devices')
        self.assertEqual([], devices.findall('interface'))
        ports = [c for c in devices.findall('controller')
                 if c.get('model') == 'pcie-root-port']
        self.assertEqual(4, len(ports))
        self.assertEqual(1, len([c for c in devices.findall('controller')
                                 if c.get('model') == 'pcie-root']))
        names = [c.find('target').get('name')
                 for c in devices.findall('channel')]
        self.assertEqual([domainxml.AGENT_CHANNEL], names)
        balloon = devices.find('memballoon')
        self.assertEqual('virtio', balloon.get('model'))
        self.assertEqual('on', balloon.get('freePageReporting'))

    def test_refuses_domain_without_acpi(self):
        xml = INSTANCE_XML.replace('<acpi/>', '')
        e = self.assertRaises(exception.BuildError, self.miniaturize, xml)
        self.assertIn('ACPI', str(e))

    def test_free_root_ports(self):
        xml = '''<domain><devices>
          <controller type='pci' index='0' model='pcie-root'/>
          <controller type='pci' index='1' model='pcie-root-port'>
            <address type='pci' bus='0x00' slot='0x01'/></controller>
          <controller type='pci' index='2' model='pcie-root-port'>
            <address type='pci' bus='0x00' slot='0x02'/></controller>
          <controller type='pci' index='3' model='pcie-root-port'/>
          <disk><address type='pci' bus='0x01' slot='0x00'/></disk>
        </devices></domain>'''
        self.assertEqual(2, domainxml.free_root_ports(xml))
        more = domainxml.add_root_ports(xml, 2)
        self.assertEqual(4, domainxml.free_root_ports(more))

    def test_refuses_i440fx(self):
        xml = INSTANCE_XML.replace("machine='q35'", "machine='pc'")
        e = self.assertRaises(exception.BuildError, self.miniaturize, xml)
        self.assertIn('q35', str(e))


class ReidentifyTest(testtools.TestCase):

    def test_clone_gets_its_own_name_uuid_disk_and_log(self):
        root = ET.fromstring(domainxml.reidentify(
            fakes.DOMAIN_XML, 'clone-1', 'u-2', '/inst/disk', '/inst/log'))
        self.assertEqual('clone-1', root.find('name').text)
        self.assertEqual('u-2', root.find('uuid').text)
        disk = domainxml.primary_disk(root)
        self.assertEqual('/inst/disk', disk.find('source').get('file'))
        self.assertIsNone(disk.find('backingStore'))
        self.assertEqual(['/inst/log', '/inst/log'],
                         [n.get(a) for n, a in domainxml.console_logs(root)])
        # everything else is the template's
        self.assertEqual('131072', root.find('currentMemory').text)

    def test_random_macs_are_local_and_distinct(self):
        macs = {domainxml.random_mac() for _ in range(64)}
        self.assertGreater(len(macs), 60)
        for mac in macs:
            self.assertRegex(mac, r'^52:54:00(:[0-9a-f]{2}){3}$')

    def test_interface_xml(self):
        nic = ET.fromstring(domainxml.interface_xml(
            '52:54:00:aa:bb:cc', kind='bridge', source='br0', target='tap1'))
        self.assertEqual('bridge', nic.get('type'))
        self.assertEqual('52:54:00:aa:bb:cc', nic.find('mac').get('address'))
        self.assertEqual('br0', nic.find('source').get('bridge'))
        self.assertEqual('virtio', nic.find('model').get('type'))
