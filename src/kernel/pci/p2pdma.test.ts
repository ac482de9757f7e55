import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AMD_ZEN, QEMU64, SKYLAKE, type TinyNode, tinyMachine } from '../../../test/helpers/tiny-machine.js';
import { capturingContext, pairIterator } from '../../analysis/p2p-pairs.js';
import {
  calcMapTypeAndDist,
  cpuSupportsP2pdma,
  createP2pdmaContext,
  p2pdmaMapTypeValue,
  pciP2pdmaDistanceMany,
} from './p2pdma.js';

const RR_CR = 0x001d;
const sw = (dsps: TinyNode[], acs?: number): TinyNode => ({
  kind: 'usp',
  children: dsps.map((d) => ({ ...d, acs: d.acs ?? acs })),
});
const dsp = (...kids: TinyNode[]): TinyNode => ({ kind: 'dsp', children: kids });
const ep = (extra: Partial<TinyNode> = {}): TinyNode => ({ kind: 'ep', ...extra });

describe('calcMapTypeAndDist', () => {
  const m = tinyMachine([
    [
      { kind: 'hb' },
      { kind: 'rp', children: [sw([dsp(ep()), dsp(ep())])] },
      { kind: 'rp', children: [ep()] },
    ],
  ]);
  const [a, b] = m.functions.filter((f) => f.driver === 'nvme');
  const c = m.functions.filter((f) => f.driver === 'nvme')[2]!;

  it('two endpoints under one switch are BUS_ADDR at distance 4', () => {
    const ctx = createP2pdmaContext(m, '6.1');
    const r = calcMapTypeAndDist(ctx, a!, b!, true);
    expect([r.mapType, r.dist, r.common?.name]).toEqual(['bus-addr', 4, '0000:01:00.0']);
  });
  it('self is distance 0', () => {
    const ctx = createP2pdmaContext(m, '6.1');
    expect(pciP2pdmaDistanceMany(ctx, a!, [a!], false)).toBe(0);
  });
  it('different root ports on a non-Zen CPU: refused with the kernel text', () => {
    const log: string[] = [];
    const ctx = createP2pdmaContext(m, '6.1', { log: (l) => log.push(l) });
    const r = calcMapTypeAndDist(ctx, a!, c, true);
    expect([r.mapType, r.dist]).toEqual(['not-supported', 4 + 2]);
    expect(log).toEqual([
      `nvme ${c.name}: cannot be used for peer-to-peer DMA as the client and provider (${a!.name}) do not share an upstream bridge or whitelisted host bridge`,
    ]);
    expect(pciP2pdmaDistanceMany(ctx, a!, [c], false)).toBe(-1);
  });
  it('a Zen CPU allows the host-bridge path silently', () => {
    const z = tinyMachine(
      [
        [
          { kind: 'rp', children: [ep()] },
          { kind: 'rp', children: [ep()] },
        ],
      ],
      AMD_ZEN,
    );
    const [x, y] = z.functions.filter((f) => f.driver === 'nvme');
    const log: string[] = [];
    const r = calcMapTypeAndDist(createP2pdmaContext(z, 'newest', { log: (l) => log.push(l) }), x!, y!, true);
    expect([r.mapType, r.dist, log]).toEqual(['thru-host-bridge', 4, []]);
  });
  it('a whitelisted Skylake host bridge allows the host-bridge path; an unlisted one warns only on ACS paths', () => {
    const wl = tinyMachine(
      [
        [
          { kind: 'hb', id: [0x8086, 0x2020] },
          { kind: 'rp', children: [ep()] },
          { kind: 'rp', children: [ep()] },
        ],
      ],
      SKYLAKE,
    );
    const [x, y] = wl.functions.filter((f) => f.driver === 'nvme');
    expect(calcMapTypeAndDist(createP2pdmaContext(wl, '6.1'), x!, y!, false).mapType).toBe(
      'thru-host-bridge',
    );
    const bad = tinyMachine(
      [
        [
          { kind: 'hb', id: [0x8086, 0x29c0] },
          { kind: 'rp', acs: RR_CR, children: [ep(), ep({ fn: 1 })] },
        ],
      ],
      SKYLAKE,
    );
    const [p, q] = bad.functions.filter((f) => f.driver === 'nvme');
    const log: string[] = [];
    const r = calcMapTypeAndDist(createP2pdmaContext(bad, '6.1', { log: (l) => log.push(l) }), p!, q!, true);
    expect(r.mapType).toBe('not-supported');
    expect(log).toEqual([
      `nvme ${q!.name}: ACS redirect is set between the client and provider (${p!.name})`,
      `nvme ${q!.name}: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:00:01.0`,
      'pci 0000:00:00.0: Host bridge not in P2PDMA whitelist: 8086:29c0',
      `nvme ${q!.name}: cannot be used for peer-to-peer DMA as the client and provider (${p!.name}) do not share an upstream bridge or whitelisted host bridge`,
    ]);
  });
  it('REQ_SAME_HOST_BRIDGE entries refuse traffic between two host bridges', () => {
    const two = tinyMachine(
      [
        [
          { kind: 'hb', id: [0x8086, 0x3c00] },
          { kind: 'rp', children: [ep()] },
          { kind: 'rp', children: [ep()] },
        ],
        [
          { kind: 'hb', id: [0x8086, 0x3c00] },
          { kind: 'rp', children: [ep()] },
        ],
      ],
      SKYLAKE,
    );
    const [x, y, z] = two.functions.filter((f) => f.driver === 'nvme');
    const ctx = createP2pdmaContext(two, '6.1');
    expect(calcMapTypeAndDist(ctx, x!, y!, false).mapType).toBe('thru-host-bridge');
    expect(calcMapTypeAndDist(ctx, x!, z!, false).mapType).toBe('not-supported');
  });
  it('newest whitelists devices 6.1 does not', () => {
    const dsa = tinyMachine(
      [
        [
          { kind: 'hb', id: [0x8086, 0x0b25] },
          { kind: 'rp', children: [ep()] },
          { kind: 'rp', children: [ep()] },
        ],
      ],
      SKYLAKE,
    );
    const [x, y] = dsa.functions.filter((f) => f.driver === 'nvme');
    expect(calcMapTypeAndDist(createP2pdmaContext(dsa, '6.1'), x!, y!, false).mapType).toBe('not-supported');
    expect(calcMapTypeAndDist(createP2pdmaContext(dsa, 'newest'), x!, y!, false).mapType).toBe(
      'thru-host-bridge',
    );
  });
  it('stores every result in the provider cache keyed (domain<<16)|(bus<<8)|devfn', () => {
    const ctx = createP2pdmaContext(m, '6.1');
    ctx.p2pdma.set(a!.index, { published: true, mapTypes: new Map() });
    calcMapTypeAndDist(ctx, a!, b!, false);
    calcMapTypeAndDist(ctx, a!, c, false);
    expect([...ctx.p2pdma.get(a!.index)!.mapTypes]).toEqual([
      [(b!.addr.bus << 8) | b!.addr.devfn, 'bus-addr'],
      [(c.addr.bus << 8) | c.addr.devfn, 'not-supported'],
    ]);
  });
  it('a long ACS list is cut at 127 characters as the kernel seq_buf does', () => {
    let node: TinyNode = ep();
    for (let i = 0; i < 11; i++) node = { kind: 'dsp', acs: RR_CR, children: [node] };
    const deep = tinyMachine([
      [{ kind: 'hb' }, { kind: 'rp', children: [{ kind: 'usp', children: [node, dsp(ep())] }] }],
    ]);
    const eps = deep.functions.filter((f) => f.driver === 'nvme');
    const log: string[] = [];
    calcMapTypeAndDist(createP2pdmaContext(deep, '6.1', { log: (l) => log.push(l) }), eps[0]!, eps[1]!, true);
    const list = log[1]!.split('pci=disable_acs_redir=')[1]!;
    expect(list.length).toBe(127);
    expect(list.endsWith(';')).toBe(false);
  });
});

describe('profiles and CPUs', () => {
  it('numbers the map types per profile', () => {
    expect(p2pdmaMapTypeValue('6.1', 'bus-addr')).toBe(2);
    expect(p2pdmaMapTypeValue('newest', 'bus-addr')).toBe(3);
    expect(p2pdmaMapTypeValue('newest', 'none')).toBe(1);
    expect(() => p2pdmaMapTypeValue('6.1', 'none')).toThrow();
  });
  it('cpu_supports_p2pdma: AMD family >= 0x17 on x86 only', () => {
    expect(cpuSupportsP2pdma(AMD_ZEN)).toBe(true);
    expect(cpuSupportsP2pdma(QEMU64)).toBe(false);
    expect(cpuSupportsP2pdma({ ...AMD_ZEN, family: 0x16 })).toBe(false);
    expect(cpuSupportsP2pdma({ ...AMD_ZEN, vendorId: 'HygonGenuine', family: 0x18 })).toBe(false);
    expect(cpuSupportsP2pdma({ ...AMD_ZEN, vendorId: 'AMDisbetter!' })).toBe(false);
    expect(cpuSupportsP2pdma({ ...AMD_ZEN, arch: 'aarch64' })).toBe(false);
    expect(cpuSupportsP2pdma(SKYLAKE)).toBe(false);
    expect(cpuSupportsP2pdma(null)).toBe(false);
  });
});

// Random trees: the fast tables must agree with the faithful walk on every ordered pair.
const treeArb: fc.Arbitrary<TinyNode[]> = fc.letrec<{ node: TinyNode; nodes: TinyNode[] }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      kind: fc.constant('ep' as const),
      acs: fc.option(fc.constantFrom(0, RR_CR), { nil: undefined }),
    }),
    fc.record({
      kind: fc.constantFrom('dsp' as const, 'usp' as const),
      acs: fc.option(fc.constantFrom(0, RR_CR, 'unknown' as const), { nil: undefined }),
      children: tie('nodes'),
    }),
  ),
  nodes: fc.array(tie('node'), { maxLength: 3 }),
})).nodes;

describe('fast matrix', () => {
  it('equals calcMapTypeAndDist on random trees, CPUs, profiles and ACS policies', () => {
    fc.assert(
      fc.property(
        fc.array(treeArb, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        fc.constantFrom('6.1' as const, 'newest' as const),
        fc.constantFrom('assume-off' as const, 'assume-on' as const),
        (hosts, zen, version, policy) => {
          const roots = hosts.map((h, i) =>
            i === 0 ? [{ kind: 'hb' as const, id: [0x8086, 0x2020] as [number, number] }, ...h] : h,
          );
          const m = tinyMachine(
            roots.map((r) =>
              r.map((n) => (n.kind === 'hb' || n.kind === 'ep' ? n : { ...n, kind: 'rp' as const })),
            ),
            zen ? AMD_ZEN : SKYLAKE,
          );
          const cc = capturingContext(m, version, policy);
          const it = pairIterator(cc);
          for (const p of m.functions) {
            for (const c of m.functions) {
              const slow = calcMapTypeAndDist(cc.ctx, p, c, false);
              const fast = it.pair(p, c);
              if (slow.mapType !== fast.mapType || slow.dist !== fast.hops) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 200 },
    );
  });
});
