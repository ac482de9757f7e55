import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import { FlowModel } from '../../sim/flow.js';
import { pcieLinkRate } from '../../sim/link-rate.js';
import { bytes, type DmaAddr, dmaAddr, GiB, MiB } from '../addr.js';
import type { Machine } from '../pci.js';
import { PCI_ACS_CR, PCI_ACS_EC, PCI_ACS_RR, PCI_ACS_SV, PCI_ACS_UF } from '../pci-regs.js';
import { buildFabric, type Fabric, type FabricOptions } from './fabric.js';
import { describeHops } from './hops.js';
import { forwardingEverywhere } from './platform.js';
import { type DmaKind, type RouteResult, route } from './routing.js';
import { switchBox, UNKNOWN_CPU } from './test-machines.js';

const fabricOf = (m: Machine, o: FabricOptions = {}): Fabric =>
  buildFabric(m, { flows: new FlowModel(new Engine()), linkRate: pcieLinkRate }, o);

const PF = 0x200000000000n;
const VRAM_04 = PF + GiB; // 04:00.0 BAR1
const VRAM_06 = PF + 4n * GiB; // 06:00.0 BAR1
const CMB_81 = PF + 8n * GiB; // 81:00.0 BAR2
const LINUX_RP = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF; // 0x1d, what pci_std_enable_acs sets

function go(fab: Fabric, from: string, addr: bigint, len: bigint, kind: DmaKind = 'write'): RouteResult {
  return route(fab, fab.machine.byName.get(from)!, dmaAddr(addr), bytes(len), kind);
}
function hopsOf(r: RouteResult): string {
  if (!r.ok) throw new Error(`refused: ${r.reason}: ${r.detail}`);
  return r.legs.map((l) => describeHops(l.hops)).join(' | ');
}

describe('route: peer to peer inside a switch', () => {
  it('goes NVMe -> switch -> GPU without touching the root complex when ACS is off', () => {
    const fab = fabricOf(switchBox());
    const r = go(fab, '0000:03:00.0', VRAM_04 + 4096n, MiB);
    expect(hopsOf(r)).toBe('link 0000:02:00.0 up > switch 0000:01:00.0 > link 0000:02:01.0 down');
    expect(r.ok && r.legs[0]!.via).toBe('peer');
    expect(r.ok && r.legs[0]!.target.kind === 'bar' && r.legs[0]!.target.bar.fn.name).toBe('0000:04:00.0');
  });
  it('with RR on the ingress port goes up through the root complex (and needs UF on the root port)', () => {
    const fab = fabricOf(switchBox({ dspAcs: PCI_ACS_RR | PCI_ACS_CR, rootPortAcs: LINUX_RP }));
    const r = go(fab, '0000:03:00.0', VRAM_04, MiB);
    expect(hopsOf(r)).toBe(
      'link 0000:02:00.0 up > switch 0000:01:00.0 > link 0000:00:01.0 up > root complex pci0000:00 > ' +
        'link 0000:00:01.0 down > switch 0000:01:00.0 > link 0000:02:01.0 down',
    );
    expect(r.ok && r.legs[0]!.via).toBe('root-complex');
  });
  it('refuses a redirected request at a root port without UF (unsupported request)', () => {
    const fab = fabricOf(switchBox({ dspAcs: PCI_ACS_RR, rootPortAcs: PCI_ACS_RR }));
    const r = go(fab, '0000:03:00.0', VRAM_04, MiB);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toBe('unsupported-request');
    expect(!r.ok && r.detail).toContain('0000:00:01.0');
  });
  it('blocks a peer request with egress control and no redirect (acs-blocked)', () => {
    const fab = fabricOf(switchBox({ dspAcs: PCI_ACS_EC }));
    const r = go(fab, '0000:03:00.0', VRAM_04, MiB);
    expect(!r.ok && r.reason).toBe('acs-blocked');
  });
  it('ACS on the egress port alone does not redirect (RR acts at ingress)', () => {
    const m = switchBox({ rootPortAcs: LINUX_RP });
    const gpuPort = m.byName.get('0000:02:01.0')!;
    (gpuPort as { acs: unknown }).acs = { state: 'present', capOffset: 0x148, cap: 0x7f, ctrl: PCI_ACS_RR };
    const fab = fabricOf(m);
    expect(go(fab, '0000:03:00.0', VRAM_04, 4096n).ok && 'peer').toBe('peer');
    expect(hopsOf(go(fab, '0000:04:00.0', 0x80000000n, 64n))).toContain('root complex');
  });
  it('returns a peer read over the root complex when the completer port has CR only', () => {
    const m = switchBox({ rootPortAcs: LINUX_RP });
    const nvmePort = m.byName.get('0000:02:00.0')!;
    (nvmePort as { acs: unknown }).acs = { state: 'present', capOffset: 0x148, cap: 0x7f, ctrl: PCI_ACS_CR };
    const fab = fabricOf(m);
    const r = go(fab, '0000:04:00.0', 0x80000000n, 64n, 'read');
    expect(r.ok && r.legs[0]!.via).toBe('peer');
    expect(r.ok && describeHops(r.legs[0]!.completionHops)).toBe(
      'link 0000:02:00.0 up > switch 0000:01:00.0 > link 0000:00:01.0 up > root complex pci0000:00 > ' +
        'link 0000:00:01.0 down > switch 0000:01:00.0 > link 0000:02:01.0 down',
    );
  });
});

describe('route: at the root complex', () => {
  it('sends RAM traffic to the memory controller of the node, crossing the socket link when remote', () => {
    const fab = fabricOf(switchBox());
    const node1 = fab.addressMap.ram.find((r) => r.node === 1)!;
    expect(hopsOf(go(fab, '0000:06:00.0', 0x100000n, 4096n))).toBe(
      'link 0000:00:02.0 up > root complex pci0000:00 > memory node0',
    );
    expect(hopsOf(go(fab, '0000:06:00.0', node1.base, 4096n))).toBe(
      'link 0000:00:02.0 up > root complex pci0000:00 > socket 0->1 > memory node1',
    );
    const read = go(fab, '0000:06:00.0', node1.base, 4096n, 'read');
    expect(read.ok && describeHops(read.legs[0]!.completionHops)).toBe(
      'memory node1 > socket 1->0 > root complex pci0000:00 > link 0000:00:02.0 down',
    );
  });
  it('forwards between root ports and host bridges where the platform does (Zen)', () => {
    const fab = fabricOf(switchBox());
    expect(hopsOf(go(fab, '0000:06:00.0', VRAM_04, MiB))).toBe(
      'link 0000:00:02.0 up > root complex pci0000:00 > link 0000:00:01.0 down > switch 0000:01:00.0 > ' +
        'link 0000:02:01.0 down',
    );
    expect(hopsOf(go(fab, '0000:06:00.0', CMB_81, MiB))).toBe(
      'link 0000:00:02.0 up > root complex pci0000:00 > socket 0->1 > root complex pci0000:80 > ' +
        'link 0000:80:01.0 down',
    );
  });
  it('drops peer requests on a platform that does not forward them', () => {
    const fab = fabricOf(switchBox({ cpu: UNKNOWN_CPU }));
    const r = go(fab, '0000:06:00.0', VRAM_04, MiB);
    expect(!r.ok && r.reason).toBe('host-bridge-forwarding-refused');
    expect(!r.ok && r.detail).toContain('other root complexes');
    // RAM is not peer traffic: still fine.
    expect(go(fab, '0000:06:00.0', 0x1000n, 64n).ok).toBe(true);
    // A machine override allows it.
    const forced = fabricOf(switchBox({ cpu: UNKNOWN_CPU }), { forwarding: forwardingEverywhere('any') });
    expect(go(forced, '0000:06:00.0', VRAM_04, MiB).ok).toBe(true);
  });
  it('reports no-target for an address nothing decodes', () => {
    const fab = fabricOf(switchBox());
    const r = go(fab, '0000:06:00.0', 0x7000_0000_0000n, 64n);
    expect(!r.ok && r.reason).toBe('no-target');
  });
  it('refuses a device DMA into its own port window without UF (unsupported request)', () => {
    const fab = fabricOf(switchBox());
    const r = go(fab, '0000:06:00.0', VRAM_06, 64n);
    expect(!r.ok && r.reason).toBe('unsupported-request');
  });
  it('splits a request that crosses from RAM into a hole, and refuses it whole', () => {
    const fab = fabricOf(switchBox());
    const last = fab.addressMap.ram.at(-1)!;
    const r = go(fab, '0000:06:00.0', last.end - 4096n, 8192n);
    expect(!r.ok && r.reason).toBe('no-target');
    expect(go(fab, '0000:06:00.0', last.end - 8192n, 8192n).ok).toBe(true);
  });
});

describe('route: IOMMU', () => {
  const withIommu = (): Fabric => fabricOf(switchBox({ iommu: true, dspAcs: 0x0c, rootPortAcs: LINUX_RP }));
  it('translates an IOVA to RAM through a paging domain', () => {
    const fab = withIommu();
    const unit = fab.iommuFor(fab.machine.byName.get('0000:06:00.0')!)!;
    const d = unit.allocDomain('paging')!;
    unit.attach('0000:06:00.0', d);
    expect(unit.map(d, 0xfff00000n, 0x12345000n, 4096n, 1, { read: true, write: true }).errno).toBeNull();
    const r = go(fab, '0000:06:00.0', 0xfff00010n, 64n);
    expect(hopsOf(r)).toBe(
      'link 0000:00:02.0 up > root complex pci0000:00 > iommu pci0000:00 > memory node0',
    );
    expect(r.ok && r.legs[0]!.target.kind === 'ram' && r.legs[0]!.target.offset).toBe(0x12345010);
  });
  it('faults an unmapped IOVA, records it in the unit, and a read-only page refuses writes', () => {
    const fab = withIommu();
    const unit = fab.iommuFor(fab.machine.byName.get('0000:06:00.0')!)!;
    const d = unit.allocDomain('paging')!;
    unit.attach('0000:06:00.0', d);
    unit.map(d, 0x10000n, 0x20000n, 4096n, 1, { read: true, write: false });
    const r = go(fab, '0000:06:00.0', 0x50000n, 64n);
    expect(!r.ok && r.reason).toBe('iommu-fault');
    expect(!r.ok && r.fault?.reason).toBe('not-present');
    expect(unit.faults.at(-1)).toMatchObject({
      requester: '0000:06:00.0',
      access: 'write',
      reason: 'not-present',
    });
    const w = go(fab, '0000:06:00.0', 0x10000n, 64n, 'write');
    expect(!w.ok && w.fault?.reason).toBe('permission');
    expect(go(fab, '0000:06:00.0', 0x10000n, 64n, 'read').ok).toBe(true);
  });
  it('faults a requester with no domain attached (translation is on)', () => {
    const fab = withIommu();
    const r = go(fab, '0000:06:00.0', 0x1000n, 64n);
    expect(!r.ok && r.fault?.reason).toBe('no-domain');
    expect(fab.attachIdentityDomains()).toBe(fab.machine.functions.length);
    expect(go(fab, '0000:06:00.0', 0x1000n, 64n).ok).toBe(true);
  });
  it('splits a translated request at page boundaries into RAM on two nodes', () => {
    const fab = withIommu();
    const unit = fab.iommuFor(fab.machine.byName.get('0000:06:00.0')!)!;
    const d = unit.allocDomain('paging')!;
    unit.attach('0000:06:00.0', d);
    const node1 = fab.addressMap.ram.find((r) => r.node === 1)!;
    unit.map(d, 0x100000n, 0x5000n, 4096n, 1, { read: true, write: true });
    unit.map(d, 0x101000n, node1.base, 4096n, 1, { read: true, write: true });
    const r = go(fab, '0000:06:00.0', 0x100800n, 4096n);
    expect(
      r.ok && r.legs.map((l) => [l.offset, l.len, l.target.kind === 'ram' && l.target.region.node]),
    ).toEqual([
      [0, 2048, 0],
      [2048, 2048, 1],
    ]);
  });
  it('routes a redirected peer request through the IOMMU: the device uses an IOVA for the peer BAR', () => {
    const fab = withIommu();
    const unit = fab.iommuFor(fab.machine.byName.get('0000:03:00.0')!)!;
    const d = unit.allocDomain('paging')!;
    unit.attach('0000:03:00.0', d);
    unit.map(d, 0x40000000n, VRAM_04, 0x200000n, 1, { read: true, write: true });
    const r = go(fab, '0000:03:00.0', 0x40000000n, MiB);
    expect(hopsOf(r)).toContain(
      'iommu pci0000:00 > link 0000:00:01.0 down > switch 0000:01:00.0 > link 0000:02:01.0 down',
    );
    expect(r.ok && r.legs[0]!.target.kind === 'bar' && r.legs[0]!.target.bar.fn.name).toBe('0000:04:00.0');
  });
});

describe('route: properties', () => {
  const ENDPOINTS = ['0000:03:00.0', '0000:04:00.0', '0000:05:00.0', '0000:06:00.0'];
  const TARGETS: [string, bigint, bigint][] = [
    ['0000:03:00.0', PF, 64n * MiB],
    ['0000:04:00.0', VRAM_04, GiB],
    ['0000:06:00.0', VRAM_06, GiB],
    ['0000:81:00.0', CMB_81, 64n * MiB],
  ];
  it('a peer leg never crosses a root complex; redirect or egress control never leaves a peer leg', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0x3f }),
        fc.integer({ min: 0, max: 0x3f }),
        fc.constantFrom(...ENDPOINTS),
        fc.constantFrom(...TARGETS),
        fc.bigInt({ min: 0n, max: 1n << 20n }),
        fc.constantFrom<DmaKind>('read', 'write'),
        (dspAcs, rpAcs, from, [to, base, size], off, kind) => {
          const fab = fabricOf(switchBox({ dspAcs, rootPortAcs: rpAcs }));
          const addr: DmaAddr = dmaAddr(base + (off % (size - 4096n)));
          const r = route(fab, fab.machine.byName.get(from)!, addr, bytes(4096), kind);
          if (!r.ok) {
            if (r.reason === 'acs-blocked')
              expect(dspAcs & PCI_ACS_EC && !(dspAcs & PCI_ACS_RR)).toBeTruthy();
            return;
          }
          for (const l of r.legs) {
            const viaRc = l.hops.some((h) => h.kind === 'root-complex');
            expect(viaRc).toBe(l.via === 'root-complex');
            if (l.via === 'peer' && from !== to) expect(dspAcs & (PCI_ACS_RR | PCI_ACS_EC)).toBe(0);
            expect(l.target.kind === 'bar' && l.target.bar.fn.name).toBe(to);
            expect(l.hops[0]).toMatchObject({ kind: 'link', dir: 'up' });
            expect(l.hops.at(-1)).toMatchObject({ kind: 'link', dir: 'down' });
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
