"""Domain XML for substrates: miniaturize for a build, re-identify a clone.

Both work on the caller's XML (in Nova, the XML LibvirtDriver generates
for the instance), so that a clone is the very domain its owner expects,
with only what activation changes: name, uuid, disk overlay, console log.
"""

import copy
import os
from xml.etree import ElementTree as ET

from nova_substrate.engine import exception

AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def parse(xml):
    try:
        return ET.fromstring(xml)
    except ET.ParseError as e:
        raise exception.SubstrateError('domain XML does not parse: %s' % e)


def tostring(root):
    return ET.tostring(root, encoding='unicode')


def _child(parent, tag, **attrib):
    node = parent.find(tag)
    if node is None:
        node = ET.SubElement(parent, tag, attrib)
    return node


def _set_text(root, tag, text):
    _child(root, tag).text = text


def _set_uuid(root, uuid):
    """The domain's uuid, and its SMBIOS copy, which libvirt checks."""
    _set_text(root, 'uuid', uuid)
    for entry in root.findall("./sysinfo/system/entry[@name='uuid']"):
        entry.text = uuid


def primary_disk(root):
    """The first disk device: the root disk the layer chain sits under."""
    for disk in root.findall('./devices/disk'):
        if disk.get('device', 'disk') == 'disk':
            return disk
    raise exception.SubstrateError('domain has no disk')


def disk_source(root):
    source = primary_disk(root).find('source')
    if source is None or not source.get('file'):
        raise exception.SubstrateError('root disk is not a file-backed disk')
    return source.get('file')


def _set_disk_source(root, path):
    disk = primary_disk(root)
    if disk.get('type') != 'file':
        raise exception.SubstrateError('root disk is not a file-backed disk')
    _child(disk, 'source').set('file', path)
    driver = _child(disk, 'driver', name='qemu')
    driver.set('type', 'qcow2')
    # libvirt probes the chain from the qcow2 header; a recorded chain
    # would name the template's files.
    for backing in disk.findall('backingStore'):
        disk.remove(backing)


def console_logs(root):
    """Elements whose path attribute names a console log file."""
    found = []
    for dev in root.findall('./devices/serial') + root.findall(
            './devices/console'):
        src = dev.find('source')
        if dev.get('type') == 'file' and src is not None:
            found.append((src, 'path'))
        log = dev.find('log')
        if log is not None and log.get('file'):
            found.append((log, 'file'))
    return found


def _set_console_log(root, path):
    for node, attr in console_logs(root):
        node.set(attr, path)


def local_files(xml):
    """{name: path} of the files a domain reads besides its root disk.

    The direct-boot kernel and initrd ('kernel', 'initrd') and the other
    file-backed disks, such as a config drive (named by target device).
    """
    root = parse(xml)
    found = {tag: root.findtext('./os/' + tag)
             for tag in ('kernel', 'initrd') if root.findtext('./os/' + tag)}
    root_disk = primary_disk(root)
    for disk in root.findall('./devices/disk'):
        source = disk.find('source')
        if (disk is not root_disk and source is not None and
                source.get('file')):
            found['disk-%s' % _target_dev(disk)] = source.get('file')
    return found


def relocate_files(xml, moved):
    """xml with each kernel, initrd or disk path in moved replaced."""
    root = parse(xml)
    for tag in ('kernel', 'initrd'):
        node = root.find('./os/' + tag)
        if node is not None and node.text in moved:
            node.text = moved[node.text]
    for source in root.findall('./devices/disk/source'):
        if source.get('file') in moved:
            source.set('file', moved[source.get('file')])
    return tostring(root)


def set_disk_source(xml, path):
    """xml with its root disk read from path (whatever format it has)."""
    root = parse(xml)
    source = primary_disk(root).find('source')
    if source is None:
        raise exception.SubstrateError('root disk has no source')
    source.set('file', path)
    return tostring(root)


def _is_q35(root):
    machine = root.find('./os/type')
    return machine is not None and 'q35' in (machine.get('machine') or '')


def _add_root_ports(devices, count):
    pci = [c for c in devices.findall('controller') if c.get('type') == 'pci']
    if not any(c.get('model') == 'pcie-root' for c in pci):
        ET.SubElement(devices, 'controller', type='pci', index='0',
                      model='pcie-root')
    indexes = [int(c.get('index')) for c in pci if c.get('index')]
    nxt = max(indexes + [0]) + 1
    for i in range(count):
        ET.SubElement(devices, 'controller', type='pci', index=str(nxt + i),
                      model='pcie-root-port')


def free_root_ports(xml):
    """Root ports of xml (with libvirt's addresses) that no device uses."""
    root = parse(xml)
    ports = {int(c.get('index')) for c in root.findall('./devices/controller')
             if c.get('model') == 'pcie-root-port' and c.get('index')}
    used = {int(a.get('bus'), 16) for a in root.iter('address')
            if a.get('type') == 'pci' and a.get('bus')}
    return len(ports - used)


def add_root_ports(xml, count):
    root = parse(xml)
    _add_root_ports(_child(root, 'devices'), count)
    return tostring(root)


def _ensure_agent_channel(devices):
    for chan in devices.findall('channel'):
        target = chan.find('target')
        if target is not None and target.get('name') == AGENT_CHANNEL:
            return
    chan = ET.SubElement(devices, 'channel', type='unix')
    ET.SubElement(chan, 'target', type='virtio', name=AGENT_CHANNEL)


def _ensure_balloon(devices):
    balloon = devices.find('memballoon')
    if balloon is None:
        balloon = ET.SubElement(devices, 'memballoon')
    balloon.set('model', 'virtio')
    # Free guest pages are handed back to the host, so they are neither
    # resident nor written into the memory state.
    balloon.set('freePageReporting', 'on')


def _ensure_genid(root):
    """A VM generation id, which libvirt renews on every restore.

    Guest kernels built with CONFIG_VMGENID reseed their RNG when it
    changes, so each clone's kernel learns that it is a clone.
    """
    for node in root.findall('genid'):
        root.remove(node)
    uuid_node = root.find('uuid')
    genid = ET.Element('genid')
    if uuid_node is not None:
        root.insert(list(root).index(uuid_node) + 1, genid)
    else:
        root.append(genid)


def _set_build_datasource(root, instance_id, hostname):
    """SMBIOS data telling cloud-init to run as a placeholder instance.

    cloud-init's first boot of an image (default user, packages, its own
    start-up) is work a substrate does once for all its clones; with no
    datasource cloud-init would disable itself instead, or wait for a
    metadata service. The NoCloud datasource takes its instance id from
    the SMBIOS serial number; clones get the owner's SMBIOS data and
    their instance's own datasource.
    """
    sysinfo = root.find('sysinfo')
    if sysinfo is None:
        sysinfo = ET.SubElement(root, 'sysinfo', type='smbios')
    system = _child(sysinfo, 'system')
    for entry in system.findall("entry[@name='serial']"):
        system.remove(entry)
    serial = ET.SubElement(system, 'entry', name='serial')
    serial.text = 'ds=nocloud;i=%s;h=%s' % (instance_id, hostname)
    os_node = _child(root, 'os')
    _child(os_node, 'smbios').set('mode', 'sysinfo')


def cdrom_changes(xml):
    """(ejected, inserted) device XML for each CD-ROM holding a medium."""
    changes = []
    for disk in parse(xml).findall('./devices/disk'):
        if disk.get('device') != 'cdrom' or disk.find('source') is None:
            continue
        ejected = copy.deepcopy(disk)
        for tag in ('source', 'backingStore'):
            for node in ejected.findall(tag):
                ejected.remove(node)
        inserted = copy.deepcopy(disk)
        for node in inserted.findall('backingStore'):
            inserted.remove(node)
        changes.append((tostring(ejected), tostring(inserted)))
    return changes


def miniaturize(xml, name, uuid, memory_mb, vcpus, build_memory_mb,
                spare_ports, disk_path, console_log):
    """The build domain for a substrate of the domain described by xml.

    Its maximum memory and vCPUs are the target's; it boots with
    build_memory_mb (the target's if 0) and one vCPU; it has no NICs
    (clones get theirs hot-plugged), spare PCIe root ports, a guest agent
    channel, a balloon with free page reporting, a VM generation id and a
    placeholder cloud-init datasource.
    """
    root = parse(xml)
    if root.get('type') not in ('qemu', 'kvm'):
        raise exception.BuildError('substrates need a QEMU domain')
    features = root.find('features')
    if features is None or features.find('acpi') is None:
        raise exception.BuildError(
            'substrates need ACPI (<features><acpi/>): without it a guest '
            'drops its PCI devices when a NIC is hot-plugged')
    if not _is_q35(root):
        raise exception.BuildError(
            'substrates need machine type q35: NIC hot-plug into a clone '
            'fails on i440fx ("Bus pci.0 does not support hotplugging")')
    _set_text(root, 'name', name)
    _set_uuid(root, uuid)
    _ensure_genid(root)
    _set_build_datasource(root, name, 'substrate')
    for tag, mb in (('memory', memory_mb),
                    ('currentMemory',
                     min(build_memory_mb or memory_mb, memory_mb))):
        node = _child(root, tag)
        node.set('unit', 'KiB')
        node.text = str(mb * 1024)
    vcpu = _child(root, 'vcpu')
    vcpu.text = str(vcpus)
    vcpu.set('current', '1')
    devices = _child(root, 'devices')
    for nic in devices.findall('interface'):
        devices.remove(nic)
    # libvirt puts devices behind free root ports when it assigns
    # addresses; the build tops these up until enough stay free.
    _add_root_ports(devices, spare_ports)
    _ensure_agent_channel(devices)
    _ensure_balloon(devices)
    _set_disk_source(root, disk_path)
    if console_log:
        _set_console_log(root, console_log)
    return tostring(root)


def reidentify(xml, name, uuid, disk_path, console_log):
    """The saved template XML, made into the clone's own domain."""
    root = copy.deepcopy(parse(xml))
    _set_text(root, 'name', name)
    _set_uuid(root, uuid)
    _set_disk_source(root, disk_path)
    if console_log:
        _set_console_log(root, console_log)
    return tostring(root)


def _target_dev(disk):
    target = disk.find('target')
    return None if target is None else target.get('dev')


def _adopt_element(root, owner, tag):
    """root's child tag replaced by owner's (or removed if owner has none)."""
    for node in root.findall(tag):
        root.remove(node)
    theirs = owner.find(tag)
    if theirs is not None:
        root.append(copy.deepcopy(theirs))


def adopt_identity(xml, owner_xml, disk_path):
    """The saved template XML, made into the domain owner_xml describes.

    owner_xml is the full XML the owner would have been booted with (in
    Nova, what LibvirtDriver generated for the instance). The clone keeps
    the template's devices and their addresses, which the memory state
    depends on, and takes everything that names the owner from it: name,
    uuid, metadata, SMBIOS data, the sources of every disk but the root
    (config drive), kernel and initrd, and the console log. The root disk
    becomes disk_path, the overlay on the template's layer.
    """
    root = copy.deepcopy(parse(xml))
    owner = parse(owner_xml)
    for tag in ('name', 'uuid'):
        text = owner.findtext(tag)
        if not text:
            raise exception.SubstrateError('owner XML has no <%s>' % tag)
        _set_text(root, tag, text)
    for tag in ('title', 'description', 'metadata', 'sysinfo'):
        _adopt_element(root, owner, tag)
    # The build's SMBIOS data (its placeholder datasource) goes with it.
    _adopt_element(_child(root, 'os'), _child(owner, 'os'), 'smbios')
    _set_disk_source(root, disk_path)
    owner_disks = {_target_dev(d): d for d in owner.findall('./devices/disk')}
    root_disk = primary_disk(root)
    for disk in root.findall('./devices/disk'):
        if disk is root_disk:
            continue
        theirs = owner_disks.get(_target_dev(disk))
        if theirs is None or theirs.get('device') != disk.get('device'):
            raise exception.SubstrateError(
                'owner has no %s disk at %s' % (disk.get('device', 'disk'),
                                                _target_dev(disk)))
        for tag in ('source', 'backingStore'):
            for node in disk.findall(tag):
                disk.remove(node)
        if theirs.find('source') is not None:
            disk.append(copy.deepcopy(theirs.find('source')))
    for tag in ('kernel', 'initrd'):
        mine, theirs = root.find('./os/' + tag), owner.find('./os/' + tag)
        if (mine is None) != (theirs is None):
            raise exception.SubstrateError(
                'owner and template differ in <os><%s>' % tag)
        if mine is not None:
            mine.text = theirs.text
    _adopt_channel_sources(root, owner)
    logs = console_logs(owner)
    if logs:
        node, attr = logs[0]
        _set_console_log(root, node.get(attr))
    return tostring(root)


def _adopt_channel_sources(root, owner):
    """Channel sockets named after the owner (Nova names the agent's)."""
    def target_name(chan):
        target = chan.find('target')
        return None if target is None else target.get('name')
    theirs = {target_name(c): c for c in owner.findall('./devices/channel')}
    for chan in root.findall('./devices/channel'):
        source = chan.find('source')
        if source is None or chan.get('type') != 'unix':
            continue
        owner_source = theirs.get(target_name(chan))
        owner_source = (None if owner_source is None
                        else owner_source.find('source'))
        if owner_source is not None and owner_source.get('path'):
            source.set('path', owner_source.get('path'))
        else:
            # libvirt names the socket after the domain at start.
            source.attrib.pop('path', None)


def interfaces(xml):
    """The <interface> elements of a domain XML, each as a document."""
    return [tostring(nic) for nic in parse(xml).findall('./devices/interface')]


def random_mac():
    """A random MAC in QEMU's locally administered 52:54:00 range."""
    b = os.urandom(3)
    return '52:54:00:%02x:%02x:%02x' % tuple(b)


def interface_xml(mac, kind='ethernet', target=None, source=None,
                  model='virtio'):
    """A NIC for hot-plugging into a clone."""
    nic = ET.Element('interface', type=kind)
    ET.SubElement(nic, 'mac', address=mac)
    if kind == 'bridge' and source:
        ET.SubElement(nic, 'source', bridge=source)
    elif kind == 'network' and source:
        ET.SubElement(nic, 'source', network=source)
    if target:
        ET.SubElement(nic, 'target', dev=target)
    ET.SubElement(nic, 'model', type=model)
    return tostring(nic)
