"""The engine's settings, decoupled from oslo.config.

The engine takes plain values so it can be driven by the command line, by
the Nova driver and by tests alike; from_conf() reads the [substrate]
options declared in nova_substrate.conf.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    build_memory_mb: int = 0
    spare_pcie_ports: int = 8
    build_timeout: float = 300.0
    activate_timeout: float = 30.0
    verify_memory: bool = True
    hook_path: str = '/usr/sbin/nova-substrate-hook'
    guest_tools_path: str = '/var/lib/nova-substrate/guest-tools'
    ssh_host_keys: str = 'background'
    substrates_per_key: int = 2

    @classmethod
    def from_conf(cls, conf):
        sub = conf.substrate
        return cls(**{f.name: getattr(sub, f.name)
                      for f in dataclasses.fields(cls)})
