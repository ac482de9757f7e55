import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, GiB, MiB } from '../hw/addr.js';
import { Engine } from './engine.js';
import { type Flow, FlowModel, type FlowResource } from './flow.js';
import { pcieLinkRate } from './link-rate.js';

// Effective Gen4 x16 and Gen3 x4 rates worked by hand (see link-rate.test.ts): raw x 256/284.
const GEN4_X16 = 32 * (128 / 130) * (256 / 284); // 28.4013 GB/s = bytes/ns
const GEN3_X4 = 4 * (128 / 130) * (256 / 284); // 3.5502 GB/s
const within1pct = (actual: number, expected: number): void =>
  expect(Math.abs(actual - expected) / expected).toBeLessThan(0.01);

/** GPU -> switch -> NVMe: two Gen4 x16 link directions and a switch crossbar between them. */
function gen4Path(m: FlowModel, middle = pcieLinkRate(4, 16).effectiveGBps) {
  const eff = pcieLinkRate(4, 16).effectiveGBps;
  return [
    m.addResource('gpu link up', eff, 100),
    m.addResource('switch crossbar', 256, 150),
    m.addResource('middle hop', middle, 0),
    m.addResource('nvme link down', eff, 100),
  ];
}

describe('FlowModel: the issue #4 bandwidth checks', () => {
  it('one flow alone on a Gen4 x16 path runs at the effective rate, plus latency once', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const path = gen4Path(m);
    let doneAt = -1;
    const f = m.startFlow({ path, size: bytes(GiB), onComplete: () => (doneAt = e.nowNs) });
    e.run();
    const expected = 350 + Number(GiB) / GEN4_X16;
    within1pct(doneAt, expected);
    expect(doneAt).toBeCloseTo(expected, 3);
    expect(f.state).toBe('done');
    expect(f.deliveredBytes).toBe(Number(GiB));
  });
  it('two concurrent flows on that path each get half', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const path = gen4Path(m);
    const done: number[] = [];
    const flows = [0, 1].map(() =>
      m.startFlow({ path, size: bytes(GiB), onComplete: () => done.push(e.nowNs) }),
    );
    e.run(351);
    for (const f of flows) within1pct(m.rateOf(f), GEN4_X16 / 2);
    e.run();
    expect(done).toHaveLength(2);
    for (const t of done) within1pct(t - 350, (2 * Number(GiB)) / GEN4_X16);
  });
  it('a path crossing a Gen3 x4 hop is limited by it', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const path = gen4Path(m, pcieLinkRate(3, 4).effectiveGBps);
    let doneAt = -1;
    const f = m.startFlow({ path, size: bytes(256n * MiB), onComplete: () => (doneAt = e.nowNs) });
    e.run(400);
    within1pct(m.rateOf(f), GEN3_X4);
    e.run();
    within1pct(doneAt - 350, Number(256n * MiB) / GEN3_X4);
  });
});

describe('FlowModel: max-min fairness', () => {
  it('splits the classic 3-flow / 2-link example max-min fairly', () => {
    // Link A (1 B/ns) carries f1 and f2; link B (2 B/ns) carries f1 and f3. A is the bottleneck:
    // f1 = f2 = 0.5; f3 takes what B has left, 1.5 (not the 1.0 an equal split of B would give).
    const e = new Engine();
    const m = new FlowModel(e);
    const a = m.addResource('A', 1);
    const b = m.addResource('B', 2);
    const big = bytes(1_000_000);
    const f1 = m.startFlow({ path: [a, b], size: big });
    const f2 = m.startFlow({ path: [a], size: big });
    const f3 = m.startFlow({ path: [b], size: big });
    expect([f1, f2, f3].map((f) => m.rateOf(f))).toEqual([0.5, 0.5, 1.5]);
  });
  it('gives a capped flow its cap and the rest to the others', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const l = m.addResource('L', 10);
    const capped = m.startFlow({ path: [l], size: bytes(100), capBytesPerNs: 1 });
    const others = [0, 1].map(() => m.startFlow({ path: [l], size: bytes(100) }));
    expect(m.rateOf(capped)).toBe(1);
    for (const f of others) expect(m.rateOf(f)).toBe(4.5);
  });
  it('re-solves when flows start and end', () => {
    // X (3000 B) runs alone at 1 B/ns and has moved 1000 B when Y (500 B) joins at t=1000; both run at
    // 0.5 B/ns until Y ends at t=2000 (X has then moved 1500 B); X finishes alone at t=3500.
    const e = new Engine();
    const m = new FlowModel(e);
    const l = m.addResource('L', 1);
    const ends: Record<string, number> = {};
    const x = m.startFlow({ path: [l], size: bytes(3000), onComplete: () => (ends.x = e.nowNs) });
    let y: Flow | null = null;
    e.schedule(1000, () => {
      y = m.startFlow({ path: [l], size: bytes(500), onComplete: () => (ends.y = e.nowNs) });
    });
    e.run(1500);
    expect(m.rateOf(x)).toBe(0.5);
    expect(m.remainingBytes(x)).toBeCloseTo(1750, 9);
    expect(m.remainingBytes(y!)).toBeCloseTo(250, 9);
    e.run();
    expect(ends).toEqual({ y: 2000, x: 3500 });
  });
  it('aborts a flow and gives its share back', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const l = m.addResource('L', 2);
    let keptEnd = -1;
    const kept = m.startFlow({ path: [l], size: bytes(4000), onComplete: () => (keptEnd = e.nowNs) });
    const gone = m.startFlow({ path: [l], size: bytes(4000), onComplete: () => expect.unreachable() });
    e.schedule(1000, () => expect(m.abortFlow(gone)).toBe(true));
    e.run();
    expect(gone.state).toBe('aborted');
    expect(gone.deliveredBytes).toBe(1000);
    expect(m.abortFlow(gone)).toBe(false);
    expect(m.abortFlow(kept)).toBe(false);
    expect(keptEnd).toBe(1000 + 3000 / 2);
  });
  it('stalls a flow while its link has no capacity and resumes it after', () => {
    // 1000 B at 1 B/ns: 400 B moved by t=400, link down until t=1000, the rest at 2 B/ns: done at 1300.
    const e = new Engine();
    const m = new FlowModel(e);
    const l = m.addResource('L', 1);
    let doneAt = -1;
    const f = m.startFlow({ path: [l], size: bytes(1000), onComplete: () => (doneAt = e.nowNs) });
    e.schedule(400, () => m.setCapacity(l, 0));
    e.schedule(1000, () => m.setCapacity(l, 2));
    e.run(999);
    expect(m.rateOf(f)).toBe(0);
    expect(m.remainingBytes(f)).toBe(600);
    e.run();
    expect(doneAt).toBe(1300);
    expect(m.stats(l).busyNs).toBe(700);
  });
  it('accounts bytes, busy time and utilisation per resource', () => {
    const e = new Engine();
    const m = new FlowModel(e);
    const l = m.addResource('L', 4);
    m.startFlow({ path: [l], size: bytes(4000) });
    e.schedule(2000, () => {});
    e.run();
    const s = m.stats(l);
    expect(s.bytesCarried).toBeCloseTo(4000, 6);
    expect(s.busyNs).toBeCloseTo(1000, 6);
    expect(s.utilisation).toBeCloseTo(0.5, 9);
    expect(s.activeFlows).toBe(0);
  });
  it('rejects broken flows (bugs in the caller)', () => {
    const m = new FlowModel(new Engine());
    const l = m.addResource('L', 1);
    expect(() => m.startFlow({ path: [], size: bytes(1) })).toThrow(RangeError);
    expect(() => m.startFlow({ path: [l, l], size: bytes(1) })).toThrow(/twice/);
    expect(() => m.addResource('bad', -1)).toThrow(RangeError);
  });
});

describe('FlowModel: scale', () => {
  it('runs 4096 concurrent flows over 64 endpoints to completion, deterministically', () => {
    const run = (): number[] => {
      const e = new Engine(9);
      const m = new FlowModel(e);
      const root = m.addResource('root complex', 64, 200);
      const ups = Array.from({ length: 64 }, (_, i) => m.addResource(`ep${i} up`, GEN4_X16, 100));
      const downs = Array.from({ length: 64 }, (_, i) => m.addResource(`ep${i} down`, GEN4_X16, 100));
      const ends: number[] = [];
      for (let i = 0; i < 4096; i++) {
        const s = e.prng.below(64);
        const d = (s + 1 + e.prng.below(63)) % 64;
        const size = bytes(4096 * (1 + e.prng.below(256)));
        m.startFlow({ path: [ups[s]!, root, downs[d]!], size, onComplete: () => ends.push(e.nowNs) });
      }
      e.run();
      expect(m.completed).toBe(4096);
      return ends;
    };
    const a = run();
    expect(a).toHaveLength(4096);
    expect(run()).toEqual(a);
  });
});

/** Max-min check: every active flow is at its cap or crosses a saturated resource where it is among the fastest. */
function checkAllocation(m: FlowModel, flows: readonly Flow[], res: readonly FlowResource[]): string | null {
  const act = flows.filter((f) => f.state === 'active');
  const load = new Map<FlowResource, number>();
  const fastest = new Map<FlowResource, number>();
  for (const f of act)
    for (const r of f.path) {
      load.set(r, (load.get(r) ?? 0) + m.rateOf(f));
      fastest.set(r, Math.max(fastest.get(r) ?? 0, m.rateOf(f)));
    }
  for (const r of res) {
    const l = load.get(r) ?? 0;
    if (l > r.capacityBytesPerNs * (1 + 1e-9) + 1e-12) return `${r.name} over capacity: ${l}`;
  }
  for (const f of act) {
    const rate = m.rateOf(f);
    if (rate >= f.capBytesPerNs * (1 - 1e-9)) continue;
    const ok = f.path.some(
      (r) => (load.get(r) ?? 0) >= r.capacityBytesPerNs * (1 - 1e-9) && rate >= fastest.get(r)! * (1 - 1e-9),
    );
    if (!ok) return `${f.label} has no bottleneck at rate ${rate}`;
  }
  return null;
}

describe('FlowModel: properties', () => {
  const flowArb = fc.record({
    path: fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 4 }),
    size: fc.integer({ min: 0, max: 100_000 }),
    startNs: fc.integer({ min: 0, max: 20_000 }),
    cap: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
  });
  it('never overloads a resource, stays max-min fair, finishes every flow, conserves bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 6, maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 6, maxLength: 6 }),
        fc.array(flowArb, { minLength: 1, maxLength: 40 }),
        (caps, lats, specs) => {
          const e = new Engine();
          const m = new FlowModel(e);
          const res = caps.map((c, i) => m.addResource(`r${i}`, c, lats[i]!));
          const flows: Flow[] = [];
          for (const s of specs)
            e.schedule(s.startNs, () => {
              const path = s.path.map((i) => res[i]!);
              const o = { path, size: bytes(s.size), label: `f${flows.length}` };
              flows.push(m.startFlow(s.cap === undefined ? o : { ...o, capBytesPerNs: s.cap }));
            });
          while (e.step()) {
            const bad = checkAllocation(m, flows, res);
            if (bad) throw new Error(`at ${e.nowNs}: ${bad}`);
          }
          expect(flows.every((f) => f.state === 'done' && f.deliveredBytes === f.sizeBytes)).toBe(true);
          for (const r of res) {
            const sent = flows.filter((f) => f.path.includes(r)).reduce((a, f) => a + f.sizeBytes, 0);
            const carried = m.stats(r).bytesCarried;
            expect(Math.abs(carried - sent)).toBeLessThanOrEqual(1e-6 * Math.max(1, sent));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
