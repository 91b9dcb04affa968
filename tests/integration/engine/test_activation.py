"""Clones of one substrate, activated at once on real libvirt + QEMU.

Each clone must be its own machine: identity, entropy, size, NIC, clock,
checked from inside the guest through the agent.
"""

import concurrent.futures
import hashlib
import os
import time

from nova_substrate.engine import activate
from nova_substrate.engine import pool as pool_mod
from nova_substrate.engine import qemuimg
from tests.integration import base

CLONES = 3


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class ConcurrentClonesTest(base.SubstrateTestCase):

    def test_clones_are_distinct_machines_of_the_target_size(self):
        layer_before = _sha256(self.template.layer_path)
        self.pool.fill(self.template.key, CLONES)
        specs = [self.clone_spec('clone-%d' % i) for i in range(CLONES)]
        with concurrent.futures.ThreadPoolExecutor(CLONES) as ex:
            clones = list(ex.map(self.activate, specs))

        facts = [self.facts(c) for c in clones]
        for spec, clone, fact in zip(specs, clones, facts):
            self.assertEqual(spec.hostname, fact['hostname'])
            self.assertEqual(spec.hostname, clone.guest['hostname'])
            # size: every vCPU online, balloon deflated to the flavor
            self.assertEqual(str(self.VCPUS), fact['cpus'])
            self.assertEqual(self.MEMORY_MB * 1024,
                             clone.domain.info()[2])
            memtotal_mb = int(fact['memtotal_kb']) // 1024
            self.assertGreater(memtotal_mb, self.MEMORY_MB * 0.8)
            self.assertLessEqual(memtotal_mb, self.MEMORY_MB)
            # the hot-plugged NIC with the given MAC, up
            mac = activate.nic_macs(spec.nics)[0]
            self.assertIn(mac, fact['macs'].split())
            # the clock: set on activation, not the template's
            self.assertLess(abs(int(fact['epoch']) - fact['host_epoch']), 3)
            # disk: the clone's own overlay on the frozen layer
            info = qemuimg.info(spec.overlay_path)
            self.assertEqual(self.template.layer_path,
                             info['full-backing-filename'])
            self.assertIn(spec.uuid, self.pool.layer_users(
                self.template.meta['layer_id']))
        for field in ('hostname', 'machine_id', 'ssh_key', 'urandom'):
            values = [f[field] for f in facts]
            self.assertEqual(len(values), len(set(values)),
                             '%s repeats across clones: %s' % (field,
                                                               values))
            self.assertNotIn('', values)
        self.assertEqual(layer_before, _sha256(self.template.layer_path))
        self.assertEqual([], os.listdir(os.path.join(self.pool.path,
                                                     'claimed')))

    def facts(self, clone):
        # SSH host keys are made right after the activation returns.
        out = self.guest_run(clone.domain, (
            'k=/etc/ssh/ssh_host_ed25519_key.pub; i=0; '
            'while [ ! -s $k ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); '
            'done; '
            'hostname; cat /etc/machine-id; '
            'cut -d" " -f2 /etc/ssh/ssh_host_ed25519_key.pub; '
            'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; '
            'grep -c ^processor /proc/cpuinfo; '
            'sed -n "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p" /proc/meminfo; '
            'cat /sys/class/net/*/address | tr "\\n" " "; echo; '
            'date +%s'))
        host_epoch = int(time.time())
        keys = ('hostname', 'machine_id', 'ssh_key', 'urandom', 'cpus',
                'memtotal_kb', 'macs', 'epoch')
        lines = out.splitlines()
        self.assertEqual(len(keys), len(lines), out)
        fact = dict(zip(keys, lines))
        fact['host_epoch'] = host_epoch
        return fact

    def test_clone_of_an_empty_pool_copies_the_template(self):
        while self.pool.ready_count(self.template.key):
            self.pool.claim(self.template.key).discard()
        clone = self.activate(self.clone_spec('on-demand'))
        self.assertEqual('on-demand', clone.guest['hostname'])

    def test_destroyed_clone_leaves_nothing(self):
        spec = self.clone_spec('short-lived')
        self.pool.fill(self.template.key, 1)
        clone = activate.activate_clone(self.conn, self.pool,
                                        self.template.key, spec,
                                        base.SETTINGS)
        activate.destroy_clone(self.pool, clone)
        self.assertNoTrace(spec)

    def test_restarted_pool_adopts_the_real_substrate(self):
        self.pool.fill(self.template.key, 1)
        reopened = pool_mod.SubstratePool(self.pool.path,
                                          self.pool.layer_root, 0)
        report = reopened.recover()
        self.assertIn(self.template.key, report['adopted'])
        self.assertEqual([], report['removed'])
        clone = self.activate(self.clone_spec('after-restart'))
        self.assertEqual('after-restart', clone.guest['hostname'])
