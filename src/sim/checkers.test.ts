import { describe, expect, it } from 'vitest';
import { bytes, MiB } from '../hw/addr.js';
import { copyMemory, SparseMemory } from '../hw/memory/sparse-memory.js';
import { CheckerSet, type MemSpan, NoByteLostChecker, type SimObservation } from './checkers.js';

function regions() {
  const ram = new SparseMemory('ram', 'ram', bytes(4n * MiB));
  const bar = new SparseMemory('bar', 'bar', bytes(4n * MiB));
  ram.write(
    1000,
    Uint8Array.from({ length: 200_000 }, (_, i) => (i * 13) & 0xff),
  );
  const src: MemSpan = [{ region: ram, offset: 1000, length: 200_000 }];
  const dst: MemSpan = [
    { region: bar, offset: 0, length: 100_000 },
    { region: bar, offset: 3_000_000, length: 100_000 },
  ];
  return { ram, bar, src, dst };
}
const start = (id: number, src: MemSpan, dst: MemSpan): SimObservation => ({
  kind: 'transfer-start',
  atNs: 0,
  id,
  label: `dma${id}`,
  src,
  dst,
});

describe('NoByteLostChecker', () => {
  it('passes a transfer whose bytes all arrived, even split over two destination pieces', () => {
    const { ram, bar, src, dst } = regions();
    const set = new CheckerSet([new NoByteLostChecker()]);
    set.observe(start(1, src, dst));
    copyMemory(bar, 0, ram, 1000, 100_000);
    copyMemory(bar, 3_000_000, ram, 101_000, 100_000);
    set.observe({ kind: 'transfer-end', atNs: 10, id: 1 });
    set.finish(10);
    expect(set.violations).toEqual([]);
    expect(() => set.assertClean('dmasim sim --seed 1')).not.toThrow();
  });
  it('catches one corrupted byte and says how to reproduce', () => {
    const { ram, bar, src, dst } = regions();
    const set = new CheckerSet([new NoByteLostChecker()]);
    set.observe(start(2, src, dst));
    copyMemory(bar, 0, ram, 1000, 100_000);
    copyMemory(bar, 3_000_000, ram, 101_000, 100_000);
    bar.write(3_050_000, Uint8Array.of(bar.readBytes(3_050_000, 1)[0]! ^ 1));
    set.observe({ kind: 'transfer-end', atNs: 10, id: 2 });
    expect(set.violations).toHaveLength(1);
    expect(set.violations[0]!.message).toMatch(
      /^transfer 2 \(dma2\): destination checksum 0x[0-9a-f]{16} != source/,
    );
    expect(() => set.assertClean('dmasim sim --seed 7')).toThrow(/reproduce with: dmasim sim --seed 7/);
  });
  it('reports transfers never completed, completed twice, or mismatched in size', () => {
    const { src, dst } = regions();
    const c = new NoByteLostChecker();
    c.observe(start(3, src, dst));
    c.observe(start(4, src, dst.slice(0, 1)));
    c.observe({ kind: 'transfer-abort', atNs: 5, id: 4 });
    c.observe({ kind: 'transfer-end', atNs: 6, id: 9 });
    c.finish(7);
    expect(c.violations.map((v) => v.message)).toEqual([
      'transfer 4 (dma4): source is 200000 bytes, destination 100000',
      'transfer 9 completed but was never started (or completed twice)',
      'transfer 3 (dma3) never completed: 200000 bytes lost',
    ]);
  });
});
