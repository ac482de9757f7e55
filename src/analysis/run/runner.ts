// `dmasim run`: execute a scenario on a machine and collect what the report shows. Mirrors no kernel
// file. The order is the one a person at the machine would follow:
//
//   boot (world.ts) -> fill namespaces with seeded random blocks -> make the buffers
//   -> each transfer in turn (skipped when the transfer it comes `after` failed), watched on the fabric
//   -> per-link bytes and utilisation, root-complex / host-memory bytes of data, IOMMU faults,
//      kernel log, dma-debug findings -> the scenario's expectations checked
//
// Everything random comes from the scenario's seed; two runs with one seed give the same report.

import type { IommuFault } from '../../hw/iommu/iommu.js';
import type { Machine, PciFunction } from '../../hw/pci.js';
import type { Errno } from '../../kernel/errno.js';
import { exitMmap } from '../../kernel/mm/vma.js';
import { p2pmemSysfsRead } from '../../kernel/pci/p2pdma-sysfs.js';
import { Prng } from '../../sim/prng.js';
import { checksumBuffer, makeBuffer, type RunBuffer } from './buffers.js';
import { type TransferTraffic, trafficObserver } from './observe.js';
import type { Scenario, ScenarioDoc } from './scenario-file.js';
import { newTransferResult, runTransfer, type TransferResult } from './transfer.js';
import { buildWorld, findNvme, type World } from './world.js';

export interface RunOptions {
  /** Replaces the scenario's kernel / seed / iommu (the CLI's overrides). */
  readonly kernel?: '6.1' | 'newest' | undefined;
  readonly seed?: number | undefined;
  readonly iommu?: ScenarioDoc['iommu'];
  /** Progress in bytes of all transfers. */
  readonly onProgress?: ((done: number, total: number) => void) | undefined;
}

export interface LinkUse {
  readonly name: string;
  readonly gen: number | null;
  readonly width: number | null;
  readonly GBps: number;
  readonly upBytes: number;
  readonly downBytes: number;
  /** Bytes over capacity x run time, per direction. */
  readonly upUtil: number;
  readonly downUtil: number;
}

export interface Expectation {
  readonly what: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface RunResult {
  readonly scenario: string;
  readonly machine: string;
  readonly kernel: '6.1' | 'newest';
  readonly seed: number;
  readonly iommu: string;
  readonly transfers: readonly TransferResult[];
  readonly links: readonly LinkUse[];
  /** Data bytes through a root complex / to or from host memory (all transfers). */
  readonly rootComplexBytes: number;
  readonly hostMemoryBytes: number;
  /** All fabric bytes, data and queue/descriptor traffic alike. */
  readonly fabricRootComplexBytes: number;
  readonly fabricHostMemoryBytes: number;
  readonly bytesMoved: number;
  readonly iommuFaults: readonly IommuFault[];
  readonly errors: readonly { transfer: string; errno: Errno; detail: string; count: number }[];
  readonly verified: boolean;
  readonly untouched: readonly { buffer: string; ok: boolean }[];
  /**
   * P2PDMA pools of the providers whose memory a buffer used: free bytes while the buffers were
   * mapped, and after the process unmapped them (pages return one by one on their last put).
   */
  readonly pools: readonly {
    provider: string;
    size: number;
    availableMapped: number;
    availableAfter: number;
  }[];
  readonly ledger: readonly string[];
  readonly kernelLog: readonly string[];
  readonly durationNs: number;
  readonly expectations: readonly Expectation[];
}

/** Seeded random blocks for a namespace range (not drawn from the engine's PRNG: data never changes the run). */
function fillRandom(prng: Prng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = prng.nextU32();
  for (let i = words.length * 4; i < n; i++) out[i] = prng.nextU32() & 0xff;
  return out;
}

/** Each buffer's size: what the transfers using it reach. */
function bufferSizes(doc: ScenarioDoc): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of doc.transfers) {
    const end = Number((t.bufferOffset ?? 0n) + t.size);
    m.set(t.buffer, Math.max(m.get(t.buffer) ?? 0, end));
  }
  for (const n of Object.keys(doc.buffers)) if (!m.has(n)) m.set(n, 4096);
  return m;
}

/** Fabric byte counters when the transfers start (boot traffic is not part of the run). */
interface Baseline {
  readonly links: Map<string, readonly [number, number]>;
  readonly rc: number;
  readonly mem: number;
}

function baseline(w: World): Baseline {
  const c = w.fabric.counters();
  return {
    links: new Map(w.fabric.links.map((l) => [l.name, [l.bytesUp, l.bytesDown] as const])),
    rc: c.rootComplexBytes,
    mem: c.hostMemoryBytes,
  };
}

function linkUse(w: World, durationNs: number, base: Baseline): LinkUse[] {
  const out: LinkUse[] = [];
  for (const l of w.fabric.links) {
    const [u0, d0] = base.links.get(l.name) ?? [0, 0];
    const up = l.bytesUp - u0;
    const down = l.bytesDown - d0;
    if (up === 0 && down === 0) continue;
    const cap = durationNs > 0 ? l.effectiveGBps * durationNs : Number.POSITIVE_INFINITY;
    out.push({
      name: l.name,
      gen: l.gen,
      width: l.width,
      GBps: l.effectiveGBps,
      upBytes: up,
      downBytes: down,
      upUtil: up / cap,
      downUtil: down / cap,
    });
  }
  return out;
}

/**
 * Run `sc` on `machine`.
 * @returns the full result; bad scenario references (an unknown device) become transfer errors
 *   (ENODEV), never exceptions. Throws only when the model itself is broken.
 */
export function runScenario(machine: Machine, sc: Scenario, o: RunOptions = {}): RunResult {
  const doc = sc.doc;
  const kernel = o.kernel ?? doc.kernel ?? 'newest';
  const seed = o.seed ?? doc.seed ?? 1;
  const iommu = o.iommu ?? doc.iommu ?? (machine.iommu === true ? 'lazy' : 'off');
  const w = buildWorld(machine, {
    version: kernel,
    seed,
    iommu,
    driver: { faultUnmapBeforeDma: doc.faults?.unmapBeforeDma },
  });
  const logMark = w.kernel.log.lines.length;
  const data = new Prng(seed ^ 0x5eed_da7a);
  for (const f of doc.fill ?? []) {
    const e = findNvme(w, f.device);
    if (e) e.ctrl.storage.write(Number(f.offset ?? 0n), fillRandom(data, Number(f.size)));
  }
  const sizes = bufferSizes(doc);
  const buffers = new Map<string, RunBuffer>();
  for (const [name, bdoc] of Object.entries(doc.buffers))
    buffers.set(name, makeBuffer(w, name, bdoc, sizes.get(name)!));
  const watched = doc.expect?.untouched ?? [];
  const before = new Map(watched.map((n) => [n, checksumBuffer(w, buffers.get(n)!, 0, sizes.get(n)!)]));
  const base = baseline(w);
  let current: TransferTraffic | null = null;
  w.fabric.observers.push(trafficObserver(new Set(w.nvme.map((e) => e.ctrl.storage)), () => current));
  const total = doc.transfers.reduce((s, t) => s + Number(t.size), 0);
  let done = 0;
  const t0 = w.engine.nowNs;
  const results: TransferResult[] = [];
  for (const t of doc.transfers) {
    const b = buffers.get(t.buffer)!;
    const prev = t.after === undefined ? null : results.find((r) => r.name === t.after);
    const skip = prev !== null && prev !== undefined && (prev.errors.length > 0 || prev.skipped);
    const r = newTransferResult(t, b, skip, w.engine.nowNs);
    results.push(r);
    if (skip) continue;
    const e = findNvme(w, t.device);
    if (!e) {
      r.errors.push({
        errno: 'ENODEV',
        detail: `no NVMe device "${t.device}" in ${w.machine.name}`,
        count: 1,
      });
      r.verified = true;
      continue;
    }
    current = r.traffic;
    runTransfer(w, e, b, t, r, (n) => {
      done += n;
      o.onProgress?.(done, total);
    });
    current = null;
  }
  return summarize(
    w,
    sc,
    { kernel, seed, iommu },
    results,
    { buffers, before, sizes },
    base,
    logMark,
    w.engine.nowNs - t0,
  );
}

function summarize(
  w: World,
  sc: Scenario,
  cfg: { kernel: '6.1' | 'newest'; seed: number; iommu: string },
  results: TransferResult[],
  bufs: { buffers: Map<string, RunBuffer>; before: Map<string, bigint>; sizes: Map<string, number> },
  base: Baseline,
  logMark: number,
  durationNs: number,
): RunResult {
  const { buffers, before, sizes } = bufs;
  const untouched = [...before].map(([n, c]) => ({
    buffer: n,
    ok: checksumBuffer(w, buffers.get(n)!, 0, sizes.get(n)!) === c,
  }));
  const pools = releaseBuffers(w, sc.doc, buffers);
  const sum = (f: (r: TransferResult) => number): number => results.reduce((s, r) => s + f(r), 0);
  const counters = w.fabric.counters();
  const summary = {
    scenario: sc.name,
    machine: w.machine.name,
    kernel: cfg.kernel,
    seed: cfg.seed,
    iommu: cfg.iommu,
    transfers: results,
    links: linkUse(w, durationNs, base),
    rootComplexBytes: sum((r) => r.traffic.rootComplexBytes),
    hostMemoryBytes: sum((r) => r.traffic.hostMemoryBytes),
    fabricRootComplexBytes: counters.rootComplexBytes - base.rc,
    fabricHostMemoryBytes: counters.hostMemoryBytes - base.mem,
    bytesMoved: sum((r) => r.bytesMoved),
    iommuFaults: w.iommuUnit ? [...w.iommuUnit.faults] : [],
    errors: results.flatMap((r) => r.errors.map((e) => ({ transfer: r.name, ...e }))),
    verified: results.every((r) => r.verified) && untouched.every((u) => u.ok),
    untouched,
    pools,
    ledger: w.kernel.dma.debug.reports.flatMap((r) => r.lines),
    kernelLog: w.kernel.log.lines
      .slice(logMark)
      .map((l) => `[${(l.timeNs / 1e9).toFixed(6).padStart(12)}] ${l.text}`),
    durationNs,
  };
  return { ...summary, expectations: checkExpectations(sc.doc, summary) };
}

/** The pool of a provider: total and free bytes (its p2pmem `size` and `available` files). */
function poolBytes(w: World, fn: PciFunction): { size: number; available: number } | null {
  const size = p2pmemSysfsRead(w.kernel, fn, 'size');
  const avail = p2pmemSysfsRead(w.kernel, fn, 'available');
  return size.ok && avail.ok
    ? { size: Number(size.value.trim()), available: Number(avail.value.trim()) }
    : null;
}

/** munmap() every user buffer (exit of the program) and report the providers' pools before and after. */
function releaseBuffers(w: World, doc: ScenarioDoc, buffers: Map<string, RunBuffer>): RunResult['pools'] {
  const providers = new Map<string, PciFunction>();
  for (const [name, b] of Object.entries(doc.buffers)) {
    if (b.kind === 'anon') continue;
    const fn = findNvme(w, b.provider)?.fn;
    if (fn && buffers.get(name)?.kind !== 'failed') providers.set(b.provider, fn);
  }
  const mapped = new Map([...providers].map(([n, fn]) => [n, poolBytes(w, fn)]));
  exitMmap(w.proc);
  const out: { provider: string; size: number; availableMapped: number; availableAfter: number }[] = [];
  for (const [n, fn] of providers) {
    const a = mapped.get(n);
    const b = poolBytes(w, fn);
    if (a && b)
      out.push({ provider: n, size: a.size, availableMapped: a.available, availableAfter: b.available });
  }
  return out;
}

type Summary = Omit<RunResult, 'expectations'>;

/** The scenario's `expect:` block against what happened. */
export function checkExpectations(doc: ScenarioDoc, r: Summary): Expectation[] {
  const x = doc.expect;
  if (!x) return [];
  const out: Expectation[] = [];
  const add = (what: string, ok: boolean, detail: string): void => void out.push({ what, ok, detail });
  if (x.errors !== undefined) {
    const got = [...new Set(r.errors.map((e) => e.errno))].sort();
    const want = [...new Set(x.errors)].sort();
    add(
      `errors ${want.join(',') || 'none'}`,
      got.join(',') === want.join(','),
      `got ${got.join(',') || 'none'}`,
    );
  }
  const data = r.transfers.reduce((s, t) => s + t.traffic.dataBytes, 0);
  const grade = (v: number): 'zero' | 'all' | 'some' =>
    v === 0 ? 'zero' : v >= data && data > 0 ? 'all' : 'some';
  if (x.rootComplexBytes !== undefined)
    add(
      `root-complex data bytes: ${x.rootComplexBytes}`,
      grade(r.rootComplexBytes) === x.rootComplexBytes,
      `${r.rootComplexBytes} of ${data}`,
    );
  if (x.hostMemoryBytes !== undefined)
    add(
      `host-memory data bytes: ${x.hostMemoryBytes}`,
      (r.hostMemoryBytes === 0 ? 'zero' : 'some') === x.hostMemoryBytes,
      `${r.hostMemoryBytes} of ${data}`,
    );
  if (x.iova !== undefined) {
    const iova = r.transfers.reduce((s, t) => s + t.traffic.iovaBytes, 0);
    add(`IOVAs ${x.iova ? 'used' : 'not used'}`, iova > 0 === x.iova, `${iova} data bytes translated`);
  }
  if (x.iommuFaults !== undefined)
    add(
      `IOMMU faults: ${x.iommuFaults}`,
      r.iommuFaults.length === x.iommuFaults,
      `${r.iommuFaults.length} recorded`,
    );
  for (const u of r.untouched) add(`buffer ${u.buffer} untouched`, u.ok, u.ok ? 'unchanged' : 'changed');
  add('every byte moved verified', r.verified, r.verified ? 'checksums agree' : 'a checksum differs');
  return out;
}
