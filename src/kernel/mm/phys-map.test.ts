import { describe, expect, it } from 'vitest';
import { tinyMachine } from '../../../test/helpers/tiny-machine.js';
import { busAddr, bytes, GiB, MiB, physAddr } from '../../hw/addr.js';
import { buildMachine } from '../../hw/machine-builder.js';
import type { PciBar } from '../../hw/pci.js';
import { p2pMachine, testbedBar0 } from '../pci/p2pdma-testbed.js';
import { buildPhysMap, pfnIsRam, physMapLookup, ramPerNode, regionIntersectsRam } from './phys-map.js';

const bar = (index: number, cpu: bigint, size: bigint): PciBar => ({
  index,
  kind: cpu >= 1n << 32n ? 'mem64' : 'mem32',
  prefetchable: false,
  cpuStart: physAddr(cpu),
  busStart: busAddr(cpu),
  size: bytes(size),
});

/** One host bridge with integrated endpoints carrying the given BARs. */
function withBars(bars: PciBar[][], numaNodes = 1) {
  return buildMachine({
    name: 'bars',
    source: { kind: 'builtin', path: 'test' },
    cpu: null,
    cmdline: null,
    iommu: null,
    numaNodes,
    hostBridges: [{ name: 'pci0000:00', domain: 0, rootBus: 0 }],
    functions: bars.map((b, i) => ({
      name: `0000:00:${(i + 1).toString(16).padStart(2, '0')}.0`,
      parent: { kind: 'host', hostBridge: 'pci0000:00' } as const,
      vendor: 0x1b36,
      device: 0x10,
      classCode: 0x010802,
      headerType: 0,
      portType: 'rc-integrated-endpoint' as const,
      acs: { state: 'absent' } as const,
      bars: b,
    })),
  });
}

describe('buildPhysMap (default x86 layout)', () => {
  const m = p2pMachine({ numaNodes: 2 });
  const map = buildPhysMap(m);

  it('has low RAM, the legacy hole, the 32-bit hole and RAM from 4 GiB, 16 GiB per node', () => {
    const ram = map.ram.map((r) => [r.kind, r.start, r.end, r.node]);
    expect(ram).toEqual([
      ['ram', 0n, 0x9ffffn, 0],
      ['reserved', 0xa0000n, 0xfffffn, null],
      ['ram', 0x100000n, 2n * GiB - 1n, 0],
      ['ram', 4n * GiB, 4n * GiB + 16n * GiB - (2n * GiB - 0x60000n) - 1n, 0],
      [
        'ram',
        4n * GiB + 16n * GiB - (2n * GiB - 0x60000n),
        4n * GiB + 32n * GiB - (2n * GiB - 0x60000n) - 1n,
        1,
      ],
    ]);
    expect(ramPerNode(map)).toEqual([16n * GiB, 16n * GiB]);
  });

  it('answers what is at an address: BAR, window, hole, RAM, reserved', () => {
    const ep = m.byName.get('0000:03:00.0')!;
    const b0 = physMapLookup(map, physAddr(testbedBar0(0) + 0x1000n));
    expect([b0?.kind, b0?.fn, b0?.bar, b0?.name]).toEqual(['bar', ep, 0, '0000:03:00.0 BAR 0']);
    // Between BAR 0 of endpoint 0 and of endpoint 1: inside the host bridge's 64-bit window only.
    expect(physMapLookup(map, physAddr(testbedBar0(0) + 512n * MiB))?.kind).toBe('mmio-window');
    expect(physMapLookup(map, physAddr(0xfe00_4000n))?.kind).toBe('mmio-window');
    expect(physMapLookup(map, physAddr(0xfe00_0010n))?.name).toBe('0000:03:00.0 BAR 2');
    expect(physMapLookup(map, physAddr(0xc000_0000n))?.kind).toBe('pci-hole');
    expect(physMapLookup(map, physAddr(0xb8000n))?.kind).toBe('reserved');
    expect(physMapLookup(map, physAddr(5n * GiB))?.node).toBe(0);
    expect(physMapLookup(map, physAddr(30n * GiB))?.node).toBe(1);
    expect(physMapLookup(map, physAddr(1n << 45n))).toBeNull();
  });

  it('leaves I/O-port BARs out and keeps functions without BARs without any', () => {
    expect(map.bars).toHaveLength(6);
    expect(map.bars.every((b) => b.name.includes('BAR 0') || b.name.includes('BAR 2'))).toBe(true);
    const plain = buildPhysMap(tinyMachine([[{ kind: 'rp', children: [{ kind: 'ep' }] }]]));
    expect(plain.bars).toEqual([]);
    expect(plain.windows.map((w) => w.kind)).toEqual(['pci-hole']);
  });

  it('tells RAM pfns from others', () => {
    expect(pfnIsRam(map, 0x100)).toBe(true);
    expect(pfnIsRam(map, 0xb8)).toBe(false);
    expect(pfnIsRam(map, 0xc0000)).toBe(false);
    expect(pfnIsRam(map, Number(testbedBar0(0) >> 12n))).toBe(false);
  });
});

describe('buildPhysMap adjustments', () => {
  it('lowers the 32-bit hole below a low 32-bit BAR', () => {
    const map = buildPhysMap(withBars([[bar(0, 0x7000_0000n, 0x100_0000n)]]));
    expect(map.windows.find((w) => w.kind === 'pci-hole')?.start).toBe(0x7000_0000n);
    expect(map.ram.filter((r) => r.kind === 'ram')[1]?.end).toBe(0x6fff_ffffn);
    expect(pfnIsRam(map, 0x70000)).toBe(false);
  });

  it('steps RAM over a 64-bit window that lies where RAM would go', () => {
    const map = buildPhysMap(withBars([[bar(0, 8n * GiB, 256n * MiB)]]));
    const high = map.ram.filter((r) => r.kind === 'ram' && r.start >= 4n * GiB).map((r) => [r.start, r.end]);
    expect(high[0]).toEqual([4n * GiB, 8n * GiB - 1n]);
    expect(high[1]?.[0]).toBe(9n * GiB);
    expect(ramPerNode(map)).toEqual([16n * GiB]);
    expect(map.notes.some((n) => n.includes('continues at 0x240000000'))).toBe(true);
  });

  it('notes and drops overlapping BARs', () => {
    const map = buildPhysMap(
      withBars([[bar(0, 0x100_0000_0000n, 0x20_0000n)], [bar(0, 0x100_0010_0000n, 0x20_0000n)]]),
    );
    expect(map.bars).toHaveLength(1);
    expect(map.notes[0]).toMatch(/0000:00:02.0 BAR 0 .* overlaps 0000:00:01.0 BAR 0/);
  });

  it('takes explicit RAM ranges instead of the made-up layout', () => {
    const map = buildPhysMap(withBars([]), {
      ram: [
        { start: physAddr(0x1_0000_0000n), size: bytes(GiB), node: 1 },
        { start: physAddr(0), size: bytes(GiB), node: 0 },
      ],
    });
    expect(map.ram.map((r) => [r.start, r.node])).toEqual([
      [0n, 0],
      [0x1_0000_0000n, 1],
    ]);
    expect(map.nodes).toBe(2);
    expect(() =>
      buildPhysMap(withBars([]), {
        ram: [
          { start: physAddr(0), size: bytes(GiB), node: 0 },
          { start: physAddr(MiB), size: bytes(GiB), node: 0 },
        ],
      }),
    ).toThrow(/overlap/);
  });
});

describe('regionIntersectsRam (region_intersects)', () => {
  const map = buildPhysMap(p2pMachine());
  it('is disjoint, intersects or mixed', () => {
    expect(regionIntersectsRam(map, physAddr(testbedBar0(0)), bytes(2n * MiB))).toBe('disjoint');
    expect(regionIntersectsRam(map, physAddr(GiB), bytes(2n * MiB))).toBe('intersects');
    expect(regionIntersectsRam(map, physAddr(2n * GiB - MiB), bytes(2n * MiB))).toBe('mixed');
    expect(regionIntersectsRam(map, physAddr(0x80000n), bytes(0x40000n))).toBe('mixed');
    expect(regionIntersectsRam(map, physAddr(0), bytes(0))).toBe('disjoint');
  });
});
