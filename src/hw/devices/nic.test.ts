import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, dmaAddr, GiB, MiB } from '../addr.js';
import { buildFabric, type Fabric } from '../fabric/fabric.js';
import { switchBox } from '../fabric/test-machines.js';
import type { Machine } from '../pci.js';
import { Nic } from './nic.js';

function setup(m: Machine = switchBox()): { e: Engine; fab: Fabric } {
  const e = new Engine();
  return { e, fab: buildFabric(m, { flows: new FlowModel(e), linkRate: pcieLinkRate }) };
}
const RAM = 4n * GiB;
const VRAM_04 = 0x200000000000n + GiB;

describe('Nic', () => {
  it('RDMA WRITE in loopback: host RAM -> peer GPU VRAM, completion in order', () => {
    const { e, fab } = setup();
    const nic = new Nic(fab, fab.machine.byName.get('0000:05:00.0')!);
    const ram = fab.addressMap.ram.find((r) => r.base === RAM)!;
    ram.mem.fill(0, 1 << 20, 0xa5);
    nic.postSend({
      wrId: 1,
      opcode: 'rdma-write',
      localAddr: dmaAddr(RAM),
      remoteAddr: dmaAddr(VRAM_04),
      len: bytes(MiB),
    });
    nic.postSend({
      wrId: 2,
      opcode: 'rdma-write',
      localAddr: dmaAddr(RAM),
      remoteAddr: dmaAddr(VRAM_04 + MiB),
      len: bytes(4096),
    });
    e.run();
    const wcs = nic.pollCq();
    expect(wcs.map((w) => [w.wrId, w.status, w.bytes])).toEqual([
      [1, 'success', 1 << 20],
      [2, 'success', 4096],
    ]);
    const vram = fab.addressMap.barMemory(fab.machine.byName.get('0000:04:00.0')!, 1);
    expect(vram.readBytes((1 << 20) - 4, 4)).toEqual(new Uint8Array(4).fill(0xa5));
    // The write side went peer to peer inside the switch: the root complex saw only the RAM reads.
    expect(fab.counters().rootComplexBytes).toBe((1 << 20) + 4096);
  });
  it('RDMA READ between two connected NICs, limited by the port rate', () => {
    const { e, fab } = setup();
    const a = new Nic(fab, fab.machine.byName.get('0000:06:00.0')!, { portGBps: 2 });
    const b = new Nic(fab, fab.machine.byName.get('0000:04:00.0')!, { portGBps: 2 });
    a.connect(b);
    a.postSend({
      wrId: 7,
      opcode: 'rdma-read',
      localAddr: dmaAddr(RAM),
      remoteAddr: dmaAddr(RAM + GiB),
      len: bytes(64n * MiB),
    });
    e.run();
    const [wc] = a.pollCq();
    expect(wc?.status).toBe('success');
    expect(Math.abs((wc!.endNs - wc!.startNs) / (Number(64n * MiB) / 2) - 1)).toBeLessThan(0.01);
  });
  it('reports a refused local DMA as a local protection error and a remote one as a remote access error', () => {
    const { e, fab } = setup(switchBox({ iommu: true }));
    fab.attachIdentityDomains();
    const nicFn = fab.machine.byName.get('0000:05:00.0')!;
    const unit = fab.iommuFor(nicFn)!;
    const d = unit.allocDomain('paging')!;
    unit.attach(nicFn.name, d); // nothing mapped: every NIC DMA faults
    const nic = new Nic(fab, nicFn);
    nic.postSend({
      wrId: 1,
      opcode: 'rdma-write',
      localAddr: dmaAddr(0x1000),
      remoteAddr: dmaAddr(RAM),
      len: bytes(4096),
    });
    e.run();
    expect(nic.pollCq()[0]).toMatchObject({
      status: 'local-protection-error',
      reason: 'iommu-fault',
      bytes: 0,
    });
    const peer = new Nic(fab, fab.machine.byName.get('0000:06:00.0')!);
    peer.connect(nic);
    peer.postSend({
      wrId: 2,
      opcode: 'rdma-read',
      localAddr: dmaAddr(RAM),
      remoteAddr: dmaAddr(0x2000),
      len: bytes(4096),
    });
    e.run();
    expect(peer.pollCq()[0]).toMatchObject({ status: 'remote-access-error', reason: 'iommu-fault' });
  });
});
