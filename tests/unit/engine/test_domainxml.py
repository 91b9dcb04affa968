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


TEMPLATE_XML = """<domain type='kvm'>
  <name>substrate-ab</name>
  <uuid>00000000-0000-0000-0000-0000000000aa</uuid>
  <title>build of ab</title>
  <metadata>
    <nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'>
      <nova:name>build</nova:name>
    </nova:instance>
  </metadata>
  <sysinfo type='smbios'><system>
    <entry name='serial'>template-serial</entry>
    <entry name='uuid'>00000000-0000-0000-0000-0000000000aa</entry>
  </system></sysinfo>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>/build/kernel</kernel><initrd>/build/ramdisk</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/layers/l1/layer.qcow2'/>
      <backingStore type='file'><source file='/images/base'/></backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00'
               function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/build/disk.config'/>
      <target dev='sda' bus='sata'/><readonly/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <address type='pci' bus='0x00' slot='0x02' function='0x0'/>
    </controller>
    <controller type='pci' index='5' model='pcie-root-port'>
      <address type='pci' bus='0x00' slot='0x06' function='0x0'/>
    </controller>
    <controller type='pci' index='6' model='pcie-root-port'>
      <address type='pci' bus='0x00' slot='0x07' function='0x0'/>
    </controller>
    <serial type='pty'>
      <log file='/build/console.log' append='off'/>
      <target type='isa-serial' port='0'/>
    </serial>
    <channel type='unix'>
      <source mode='bind' path='/run/libvirt/build/agent.sock'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <memballoon model='virtio' freePageReporting='on'>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00'
               function='0x0'/>
    </memballoon>
  </devices>
</domain>"""

OWNER_XML = """<domain type='kvm'>
  <name>instance-0000002a</name>
  <uuid>7c9e6679-7425-40de-944b-e07fc1f90ae7</uuid>
  <description>web server</description>
  <metadata>
    <nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'>
      <nova:name>web-1</nova:name>
    </nova:instance>
  </metadata>
  <sysinfo type='smbios'><system>
    <entry name='serial'>owner-serial</entry>
    <entry name='uuid'>7c9e6679-7425-40de-944b-e07fc1f90ae7</entry>
  </system></sysinfo>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>/instances/7c9e/kernel</kernel>
    <initrd>/instances/7c9e/ramdisk</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/instances/7c9e/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/instances/7c9e/disk.config'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <interface type='bridge'>
      <mac address='fa:16:3e:00:00:01'/><source bridge='br-int'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/instances/7c9e/console.log' append='off'/>
    </serial>
    <channel type='unix'>
      <source mode='bind'
              path='/var/lib/libvirt/qemu/org.qemu.guest_agent.0.sock'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='virtio'/>
  </devices>
</domain>"""

NOVA_NS = '{http://openstack.org/xmlns/libvirt/nova/1.1}'


def _cdrom(root):
    [cdrom] = [d for d in root.findall('./devices/disk')
               if d.get('device') == 'cdrom']
    return cdrom


class AdoptIdentityTest(testtools.TestCase):

    def adopt(self, template=TEMPLATE_XML, owner=OWNER_XML):
        return ET.fromstring(domainxml.adopt_identity(
            template, owner, '/instances/7c9e/disk.substrate'))

    def test_owner_identity(self):
        root = self.adopt()
        self.assertEqual('instance-0000002a', root.find('name').text)
        self.assertEqual('7c9e6679-7425-40de-944b-e07fc1f90ae7',
                         root.find('uuid').text)
        self.assertEqual('web-1', root.findtext(
            './metadata/%sinstance/%sname' % (NOVA_NS, NOVA_NS)))
        entries = {e.get('name'): e.text
                   for e in root.findall('./sysinfo/system/entry')}
        self.assertEqual({'serial': 'owner-serial',
                          'uuid': '7c9e6679-7425-40de-944b-e07fc1f90ae7'},
                         entries)
        self.assertEqual(1, len(root.findall('sysinfo')))
        self.assertEqual(1, len(root.findall('metadata')))
        # Taken as the owner has them, or not at all.
        self.assertEqual('web server', root.findtext('description'))
        self.assertIsNone(root.find('title'))

    def test_owner_files(self):
        root = self.adopt()
        self.assertEqual('/instances/7c9e/kernel',
                         root.findtext('./os/kernel'))
        self.assertEqual('/instances/7c9e/ramdisk',
                         root.findtext('./os/initrd'))
        self.assertEqual('/instances/7c9e/disk.config',
                         _cdrom(root).find('source').get('file'))
        self.assertEqual(['/instances/7c9e/console.log'],
                         [n.get(a) for n, a in domainxml.console_logs(root)])
        self.assertEqual(
            '/var/lib/libvirt/qemu/org.qemu.guest_agent.0.sock',
            root.find('./devices/channel/source').get('path'))

    def test_root_disk_is_the_overlay(self):
        disk = domainxml.primary_disk(self.adopt())
        self.assertEqual('/instances/7c9e/disk.substrate',
                         disk.find('source').get('file'))
        self.assertEqual('qcow2', disk.find('driver').get('type'))
        self.assertIsNone(disk.find('backingStore'))

    def test_keeps_template_devices_and_addresses(self):
        root = self.adopt()
        template = ET.fromstring(TEMPLATE_XML)
        self.assertEqual(
            [ET.tostring(a) for a in template.iter('address')],
            [ET.tostring(a) for a in root.iter('address')])
        self.assertEqual(
            [c.attrib for c in template.findall('./devices/controller')],
            [c.attrib for c in root.findall('./devices/controller')])
        self.assertEqual([], root.findall('./devices/interface'))
        self.assertEqual('on', root.find('./devices/memballoon').get(
            'freePageReporting'))
        self.assertIsNotNone(_cdrom(root).find('readonly'))
        self.assertEqual('kvm', root.get('type'))
        self.assertEqual('pc-q35-7.2', root.find('./os/type').get('machine'))

    def test_channel_without_owner_path(self):
        owner = OWNER_XML.replace(
            "path='/var/lib/libvirt/qemu/org.qemu.guest_agent.0.sock'", '')
        source = self.adopt(owner=owner).find('./devices/channel/source')
        # libvirt then names the socket after the owner's domain.
        self.assertIsNone(source.get('path'))
        self.assertEqual('bind', source.get('mode'))

    def test_owner_without_console_log_keeps_template_path(self):
        owner = OWNER_XML.replace(
            "<log file='/instances/7c9e/console.log' append='off'/>", '')
        root = self.adopt(owner=owner)
        self.assertEqual(['/build/console.log'],
                         [n.get(a) for n, a in domainxml.console_logs(root)])

    def test_owner_lacks_a_disk(self):
        start = OWNER_XML.index("<disk type='file' device='cdrom'>")
        end = OWNER_XML.index('</disk>', start) + len('</disk>')
        owner = OWNER_XML[:start] + OWNER_XML[end:]
        e = self.assertRaises(exception.SubstrateError, self.adopt,
                              owner=owner)
        self.assertIn('sda', str(e))

    def test_owner_disk_of_another_kind(self):
        owner = OWNER_XML.replace("device='cdrom'", "device='disk'")
        self.assertRaises(exception.SubstrateError, self.adopt, owner=owner)

    def test_only_template_has_a_kernel(self):
        owner = OWNER_XML.replace(
            '<kernel>/instances/7c9e/kernel</kernel>', '')
        e = self.assertRaises(exception.SubstrateError, self.adopt,
                              owner=owner)
        self.assertIn('kernel', str(e))

    def test_only_owner_has_a_kernel(self):
        template = TEMPLATE_XML.replace('<kernel>/build/kernel</kernel>', '')
        e = self.assertRaises(exception.SubstrateError, self.adopt,
                              template=template)
        self.assertIn('kernel', str(e))

    def test_only_owner_has_an_initrd(self):
        template = TEMPLATE_XML.replace('<initrd>/build/ramdisk</initrd>', '')
        e = self.assertRaises(exception.SubstrateError, self.adopt,
                              template=template)
        self.assertIn('initrd', str(e))

    def test_owner_without_name(self):
        owner = OWNER_XML.replace('<name>instance-0000002a</name>', '')
        self.assertRaises(exception.SubstrateError, self.adopt, owner=owner)

    def test_owner_does_not_parse(self):
        self.assertRaises(exception.SubstrateError, self.adopt,
                          owner='<domain>')


class DomainFilesTest(testtools.TestCase):

    def test_interfaces(self):
        [nic] = domainxml.interfaces(OWNER_XML)
        nic = ET.fromstring(nic)
        self.assertEqual('interface', nic.tag)
        self.assertEqual('fa:16:3e:00:00:01', nic.find('mac').get('address'))
        self.assertEqual('br-int', nic.find('source').get('bridge'))
        self.assertEqual([], domainxml.interfaces(TEMPLATE_XML))

    def test_local_files(self):
        self.assertEqual({'kernel': '/instances/7c9e/kernel',
                          'initrd': '/instances/7c9e/ramdisk',
                          'disk-sda': '/instances/7c9e/disk.config'},
                         domainxml.local_files(OWNER_XML))

    def test_local_files_skip_empty_drives(self):
        xml = INSTANCE_XML.replace(
            "<disk type='file' device='cdrom'><source file='/cd.iso'/>",
            "<disk type='file' device='cdrom'><target dev='sdb'/>")
        self.assertEqual({}, domainxml.local_files(xml))

    def test_local_files_name_cdrom_before_root_disk(self):
        xml = INSTANCE_XML.replace(
            "<source file='/cd.iso'/>",
            "<source file='/cd.iso'/><target dev='sda'/>")
        self.assertEqual({'disk-sda': '/cd.iso'},
                         domainxml.local_files(xml))

    def test_relocate_files(self):
        moved = {'/instances/7c9e/kernel': '/cache/kernel',
                 '/instances/7c9e/disk.config': '/cache/disk.config'}
        root = ET.fromstring(domainxml.relocate_files(OWNER_XML, moved))
        self.assertEqual('/cache/kernel', root.findtext('./os/kernel'))
        self.assertEqual('/instances/7c9e/ramdisk',
                         root.findtext('./os/initrd'))
        self.assertEqual('/cache/disk.config',
                         _cdrom(root).find('source').get('file'))
        self.assertEqual('/instances/7c9e/disk',
                         domainxml.disk_source(root))

    def test_relocate_nothing(self):
        root = ET.fromstring(domainxml.relocate_files(OWNER_XML, {}))
        self.assertEqual(domainxml.local_files(OWNER_XML),
                         domainxml.local_files(domainxml.tostring(root)))

    def test_set_disk_source(self):
        root = ET.fromstring(domainxml.set_disk_source(OWNER_XML,
                                                       '/elsewhere/disk'))
        self.assertEqual('/elsewhere/disk', domainxml.disk_source(root))
        # Whatever format the file has: the driver is left alone.
        self.assertEqual('qcow2', domainxml.primary_disk(root).find(
            'driver').get('type'))
        self.assertEqual('/instances/7c9e/disk.config',
                         _cdrom(root).find('source').get('file'))

    def test_set_disk_source_needs_a_source(self):
        xml = OWNER_XML.replace("<source file='/instances/7c9e/disk'/>", '')
        self.assertRaises(exception.SubstrateError,
                          domainxml.set_disk_source, xml, '/x')

    def test_set_disk_source_needs_a_disk(self):
        self.assertRaises(exception.SubstrateError,
                          domainxml.set_disk_source,
                          '<domain><devices/></domain>', '/x')


class CloneUniquenessTest(testtools.TestCase):
    """What a build adds so that clones differ and cloud-init runs once."""

    def miniaturize(self, xml=INSTANCE_XML, build_memory_mb=0):
        return ET.fromstring(domainxml.miniaturize(
            xml, name='substrate-x', uuid='u-1', memory_mb=512, vcpus=2,
            build_memory_mb=build_memory_mb, spare_ports=4,
            disk_path='/layers/l.qcow2', console_log='/build.log'))

    def test_boots_at_full_memory_by_default(self):
        root = self.miniaturize()
        self.assertEqual('524288', root.find('currentMemory').text)

    def test_generation_id_for_libvirt_to_renew(self):
        root = self.miniaturize()
        genid = root.findall('genid')
        self.assertEqual(1, len(genid))
        # empty: libvirt makes one, and a new one on each restore
        self.assertIsNone(genid[0].text)

    def test_placeholder_cloud_init_datasource(self):
        root = self.miniaturize()
        serials = root.findall("./sysinfo/system/entry[@name='serial']")
        self.assertEqual(['ds=nocloud;i=substrate-x;h=substrate'],
                         [e.text for e in serials])
        self.assertEqual('sysinfo', root.find('./os/smbios').get('mode'))

    def test_replaces_novas_serial(self):
        xml = INSTANCE_XML.replace(
            '<features>',
            "<sysinfo type='smbios'><system>"
            "<entry name='serial'>instance-serial</entry>"
            "<entry name='uuid'>11111111-1111-1111-1111-111111111111</entry>"
            "</system></sysinfo><features>")
        root = self.miniaturize(xml)
        self.assertEqual(
            ['ds=nocloud;i=substrate-x;h=substrate'],
            [e.text for e in root.findall(
                "./sysinfo/system/entry[@name='serial']")])

    def test_clone_takes_the_owners_smbios_or_none(self):
        template = domainxml.miniaturize(
            INSTANCE_XML, name='substrate-x', uuid='u-1', memory_mb=512,
            vcpus=2, build_memory_mb=0, spare_ports=4,
            disk_path='/layers/l.qcow2', console_log='/build.log')
        clone = ET.fromstring(domainxml.adopt_identity(
            template, INSTANCE_XML, '/inst/disk'))
        self.assertIsNone(clone.find('sysinfo'))
        self.assertIsNone(clone.find('./os/smbios'))
        owner = INSTANCE_XML.replace(
            "<os><type arch='x86_64' machine='q35'>hvm</type></os>",
            "<os><type arch='x86_64' machine='q35'>hvm</type>"
            "<smbios mode='sysinfo'/></os><sysinfo type='smbios'><system>"
            "<entry name='serial'>nova</entry></system></sysinfo>")
        clone = ET.fromstring(domainxml.adopt_identity(
            template, owner, '/inst/disk'))
        self.assertEqual(['nova'], [e.text for e in clone.findall(
            './sysinfo/system/entry')])
        self.assertEqual('sysinfo', clone.find('./os/smbios').get('mode'))


class CdromChangesTest(testtools.TestCase):

    def test_eject_and_insert_each_cdrom_with_a_medium(self):
        xml = INSTANCE_XML.replace(
            "<disk type='file' device='cdrom'><source file='/cd.iso'/></disk>",
            "<disk type='file' device='cdrom'><source file='/cd.iso'/>"
            "<backingStore/><target dev='sda' bus='sata'/></disk>"
            "<disk type='file' device='cdrom'>"
            "<target dev='sdb' bus='sata'/></disk>")
        changes = domainxml.cdrom_changes(xml)
        self.assertEqual(1, len(changes))
        ejected, inserted = (ET.fromstring(x) for x in changes[0])
        self.assertIsNone(ejected.find('source'))
        self.assertEqual('sda', ejected.find('target').get('dev'))
        self.assertEqual('/cd.iso', inserted.find('source').get('file'))
        self.assertIsNone(inserted.find('backingStore'))

    def test_no_cdrom(self):
        self.assertEqual([], domainxml.cdrom_changes(
            "<domain><devices><disk device='disk'><source file='/d'/>"
            "</disk></devices></domain>"))
