import { describe, expect, it } from 'vitest';
import { Engine } from '../../sim/engine.js';
import {
  fqFull,
  fqLength,
  fqPending,
  IOVA_DEFAULT_FQ_SIZE,
  IOVA_DEFAULT_FQ_TIMEOUT_MS,
  IOVA_SINGLE_FQ_SIZE,
  IOVA_SINGLE_FQ_TIMEOUT_MS,
  iommuDmaInitFq,
  queueIova,
} from './flush-queue.js';

function rig(type: 'per-cpu' | 'single' = 'per-cpu') {
  const engine = new Engine(1);
  const freed: [number, number, number][] = [];
  let flushes = 0;
  const fq = iommuDmaInitFq({
    type,
    nrCpus: 2,
    flushIotlbAll: () => flushes++,
    freeIova: (pfn, pages, cpu) => freed.push([pfn, pages, cpu]),
    scheduler: engine,
  });
  return { engine, fq, freed, flushes: () => flushes };
}

describe('flush queue (dma-iommu.c queue_iova / fq_flush_timeout)', () => {
  it('has the kernel constants: 256 entries and 10 ms per CPU, 32768 and 1000 ms for one queue', () => {
    expect([
      IOVA_DEFAULT_FQ_SIZE,
      IOVA_DEFAULT_FQ_TIMEOUT_MS,
      IOVA_SINGLE_FQ_SIZE,
      IOVA_SINGLE_FQ_TIMEOUT_MS,
    ]).toEqual([256, 10, 32768, 1000]);
    const { fq } = rig();
    expect([fq.rings.length, fq.size, fq.timeoutMs]).toEqual([2, 256, 10]);
    const s = rig('single').fq;
    expect([s.rings.length, s.size, s.timeoutMs]).toEqual([1, 32768, 1000]);
  });

  it('frees nothing until a flush covers the entries, then frees them oldest first', () => {
    const { engine, fq, freed, flushes } = rig();
    queueIova(fq, 100, 1, 0);
    queueIova(fq, 200, 4, 0);
    queueIova(fq, 300, 1, 1);
    expect(freed).toEqual([]);
    expect(fqPending(fq)).toBe(3);
    engine.run(IOVA_DEFAULT_FQ_TIMEOUT_MS * 1_000_000 - 1);
    expect(flushes()).toBe(0);
    engine.run(IOVA_DEFAULT_FQ_TIMEOUT_MS * 1_000_000);
    expect(flushes()).toBe(1);
    expect(freed).toEqual([
      [100, 1, 0],
      [200, 4, 0],
      [300, 1, 0],
    ]);
    expect([fq.startCnt, fq.finishCnt, fq.timerOn, fqPending(fq)]).toEqual([1, 1, false, 0]);
  });

  it('arms one timer for many entries and re-arms after it fired', () => {
    const { engine, fq, flushes } = rig();
    for (let i = 0; i < 10; i++) queueIova(fq, i, 1, 0);
    engine.run(20_000_000);
    expect(flushes()).toBe(1);
    queueIova(fq, 50, 1, 0);
    expect(fq.timerOn).toBe(true);
    engine.run(40_000_000);
    expect(flushes()).toBe(2);
  });

  it('flushes at once when a ring is full (one slot always empty), reaping it', () => {
    const { fq, freed, flushes } = rig();
    const r = fq.rings[0]!;
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE - 1; i++) queueIova(fq, i, 1, 0);
    expect(fqFull(r)).toBe(true);
    expect(fqLength(r)).toBe(255);
    expect(flushes()).toBe(0);
    queueIova(fq, 999, 1, 0);
    expect(flushes()).toBe(1);
    expect(freed).toHaveLength(255);
    expect(fqLength(r)).toBe(1);
    expect(fq.stats.fullFlushes).toBe(1);
  });

  it('reaps entries another CPU flushed for before adding (counter < finish_cnt)', () => {
    const { fq, freed } = rig();
    queueIova(fq, 1, 1, 1);
    for (let i = 0; i < 255; i++) queueIova(fq, 100 + i, 1, 0);
    queueIova(fq, 999, 1, 0);
    expect(fqLength(fq.rings[1]!)).toBe(1);
    queueIova(fq, 2, 1, 1);
    expect(freed.some(([pfn, , cpu]) => pfn === 1 && cpu === 1)).toBe(true);
    expect(fqLength(fq.rings[1]!)).toBe(1);
  });
});
