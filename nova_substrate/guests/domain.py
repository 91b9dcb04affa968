"""Domain XML for the project's test guests, shaped like Nova's.

The engine takes the XML of the instances it makes substrates for; in
Nova that is LibvirtDriver's. Outside Nova (benchmarks, engine tests) this
module writes the same kind of document for a test guest: a q35 TCG
domain with direct kernel boot, a virtio root disk, a file-backed serial
console, a balloon and the guest agent channel.
"""

from xml.sax import saxutils


def _q(value):
    return saxutils.quoteattr(str(value))


def _boot_xml(guest):
    """The <os> elements that say what the guest boots."""
    if guest.boots_from_disk:
        return "<boot dev='hd'/>"
    return (f"<kernel>{saxutils.escape(guest.kernel)}</kernel>\n"
            f"    <initrd>{saxutils.escape(guest.initrd)}</initrd>\n"
            f"    <cmdline>{saxutils.escape(guest.cmdline)}</cmdline>")


def instance_xml(guest, name, uuid, memory_mb, vcpus, disk, console_log,
                 nics=(), devices=()):
    """The domain of an instance of guest, as a normal boot would run it.

    nics and devices are XML elements for <devices>: devices holds any
    other, such as a config drive.
    """
    device_xml = ''.join(nics) + ''.join(devices)
    return f"""<domain type='qemu'>
  <name>{saxutils.escape(name)}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{int(memory_mb)}</memory>
  <currentMemory unit='MiB'>{int(memory_mb)}</currentMemory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    {_boot_xml(guest)}
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file={_q(disk)}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    {device_xml}
    <serial type='file'><source path={_q(console_log)}/></serial>
    <console type='file'><source path={_q(console_log)}/></console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='virtio'><stats period='10'/></memballoon>
  </devices>
</domain>"""
