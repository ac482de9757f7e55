// Benchmark of the simulation core: events per wall-second of the bare engine, simulated GiB moved
// per wall-second on a large sequential P2P read (flow model + sparse memory, bytes really copied),
// Buffer.copy on the same data in the same run for comparison, and the flow solver under thousands
// of concurrent flows. Prints a table, then one JSON line. Figures only, never pass/fail.
// Run: npm run bench:sim  (or npx tsx bench/sim.bench.ts)

import { loadavg } from 'node:os';
import Table from 'cli-table3';
import { runScenario } from '../src/analysis/run/runner.js';
import { resolveScenario } from '../src/analysis/run/scenario-file.js';
import { bytes, GiB, MiB } from '../src/hw/addr.js';
import { copyMemory, SparseMemory } from '../src/hw/memory/sparse-memory.js';
import { CheckerSet, NoByteLostChecker } from '../src/sim/checkers.js';
import { Engine } from '../src/sim/engine.js';
import { FlowModel, type FlowResource } from '../src/sim/flow.js';
import { describeLinkRate, pcieLinkRate } from '../src/sim/link-rate.js';
import { Prng } from '../src/sim/prng.js';
import { loadMachineFile } from '../src/topology/machine-file/index.js';

const SEED = 1;
const REGION = 256 * 1024 * 1024; // source and destination regions; the read wraps around them
const TOTAL = Number(4n * GiB);
const CHUNK = Number(MiB);
const QUEUE_DEPTH = 4;

const wallMs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** Wall and CPU milliseconds of `body` (CPU time shows our own cost when the machine is shared). */
function measure<T>(body: () => T): { value: T; ms: number; cpuMs: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = body();
  const ms = wallMs(t0);
  const c = process.cpuUsage(c0);
  return { value, ms, cpuMs: (c.user + c.system) / 1000 };
}
const perSec = (n: number, ms: number): number => n / (ms / 1000);

/** The fastest of `runs` measurements (the machine is shared: slower runs measure the neighbours). */
function best<T>(runs: number, body: () => T): { value: T; ms: number; cpuMs: number } {
  let b = measure(body);
  for (let i = 1; i < runs; i++) {
    const m = measure(body);
    if (m.ms < b.ms) b = m;
  }
  return b;
}
const RUNS = 3;
const gib = (n: number): number => n / Number(GiB);
const rows: [string, string][] = [];
const row = (k: string, v: string): number => rows.push([k, v]);

console.log(
  `dmasim sim bench (best of ${RUNS} runs each): seed ${SEED}, ${gib(TOTAL)} GiB in ${CHUNK / 1024} KiB chunks, QD ${QUEUE_DEPTH}, load average ${loadavg()[0]!.toFixed(2)}`,
);

/** Bare engine: `timers` self-rescheduling events (a new closure each), so the queue stays `timers` deep. */
function engineSteady(timers: number, events: number): number {
  const e = new Engine(SEED);
  let left = events;
  const tick = (i: number): void => {
    if (--left > 0) e.schedule(1 + ((i * 7919 + left) % 1000), () => tick(i));
  };
  for (let i = 0; i < timers; i++) e.schedule(i, () => tick(i));
  e.run();
  return e.eventsFired;
}

/** Schedule `n` events at scattered times up front, then fire them all. */
function engineBurst(n: number): number {
  const e = new Engine(SEED);
  const noop = (): void => {};
  for (let i = 0; i < n; i++) e.schedule((i * 2654435761) % 1_000_000, noop);
  e.run();
  return e.eventsFired;
}

const M = (n: number): string => `${(n / 1e6).toFixed(2)} M`;
engineSteady(1024, 1_000_000); // warm-up
const steady = best(RUNS, () => engineSteady(1024, 5_000_000));
const eventsPerSec = perSec(steady.value, steady.ms);
const burst = best(RUNS, () => engineBurst(2_000_000));
const burstPerSec = perSec(burst.value, burst.ms);
row(
  'engine: schedule+fire, 1024-deep queue',
  `${M(eventsPerSec)} events/s (per CPU-s: ${M(perSec(steady.value, steady.cpuMs))})`,
);
row(
  'engine: 2 M scheduled up front, then fired',
  `${M(burstPerSec)} events/s (per CPU-s: ${M(perSec(burst.value, burst.cpuMs))})`,
);

// The data: one seeded pseudo-random source, copied into a sparse RAM region and a plain Buffer.
const prng = new Prng(SEED);
const srcBuf = Buffer.allocUnsafe(REGION);
const words = new Uint32Array(srcBuf.buffer, srcBuf.byteOffset, REGION / 4);
for (let i = 0; i < words.length; i++) words[i] = prng.nextU32();
const ram = new SparseMemory('host ram', 'ram', bytes(REGION));
ram.write(0, srcBuf);

/** The P2P read: `total` bytes from RAM into a BAR over a Gen4 x16 path, chunk by chunk, bytes copied. */
const bar = new SparseMemory('gpu BAR1', 'bar', bytes(REGION));
function p2pRead(total: number, checked: boolean) {
  const e = new Engine(SEED);
  const m = new FlowModel(e);
  const rate = pcieLinkRate(4, 16);
  const path: FlowResource[] = [
    m.addResource('memory controller', 40, 80),
    m.addResource('root complex', 64, 150),
    m.addResource('gpu link down', rate.effectiveGBps, 100),
  ];
  const checkers = new CheckerSet([new NoByteLostChecker()]);
  let issued = 0;
  const issue = (): void => {
    if (issued >= total) return;
    const id = issued / CHUNK;
    const off = issued % REGION;
    const n = Math.min(CHUNK, total - issued);
    issued += n;
    const span = {
      src: [{ region: ram, offset: off, length: n }],
      dst: [{ region: bar, offset: off, length: n }],
    };
    if (checked)
      checkers.observe({ kind: 'transfer-start', atNs: e.nowNs, id, label: `chunk${id}`, ...span });
    m.startFlow({
      path,
      size: bytes(n),
      onComplete: () => {
        copyMemory(bar, off, ram, off, n);
        if (checked) checkers.observe({ kind: 'transfer-end', atNs: e.nowNs, id });
        issue();
      },
    });
  };
  for (let q = 0; q < QUEUE_DEPTH; q++) issue();
  e.run();
  checkers.finish(e.nowNs);
  checkers.assertClean(`npx tsx bench/sim.bench.ts (seed ${SEED})`);
  return { simNs: e.nowNs, events: e.eventsFired, rate };
}

const G = (n: number): string => `${n.toFixed(2)} GiB/s`;
// The P2P read and Buffer.copy alternate, best of RUNS each; both destinations are reused, so the
// first run of each also pays for first-touching its destination memory.
const dstBuf = Buffer.alloc(REGION);
const bufferCopy = (): void => {
  for (let done = 0; done < TOTAL; done += CHUNK) {
    const off = done % REGION;
    srcBuf.copy(dstBuf, off, off, off + CHUNK);
  }
};
let plain = measure(() => p2pRead(TOTAL, false));
let copied = measure(bufferCopy);
for (let i = 1; i < RUNS; i++) {
  const p = measure(() => p2pRead(TOTAL, false));
  if (p.ms < plain.ms) plain = p;
  const c = measure(bufferCopy);
  if (c.ms < copied.ms) copied = c;
}
const simGiBPerSec = perSec(gib(TOTAL), plain.ms);
row(describeLinkRate(plain.value.rate), `simulated ${(TOTAL / plain.value.simNs).toFixed(2)} GB/s`);
row(
  `P2P read ${gib(TOTAL)} GiB: flow model + sparse copy`,
  `${G(simGiBPerSec)} (per CPU-s: ${G(perSec(gib(TOTAL), plain.cpuMs))}; ${plain.value.events} events)`,
);
const bufferCopyGiBPerSec = perSec(gib(TOTAL), copied.ms);
row(
  `Buffer.copy ${gib(TOTAL)} GiB, same chunks`,
  `${G(bufferCopyGiBPerSec)} (per CPU-s: ${G(perSec(gib(TOTAL), copied.cpuMs))})`,
);
row('data path / Buffer.copy', `${((100 * simGiBPerSec) / bufferCopyGiBPerSec).toFixed(0)} %`);

const summed = measure(() => ram.checksum(0, REGION));
const same = bar.checksum(0, REGION) === summed.value && dstBuf.equals(srcBuf);
row(
  'checksum (FNV-1a, 2 lanes), 256 MiB',
  `${G(perSec(gib(REGION), summed.ms))}; destination ${same ? 'matches' : 'DIFFERS'}`,
);

const checked = best(RUNS, () => p2pRead(Number(GiB), true));
const checkedGiBPerSec = perSec(1, checked.ms);
row(
  'P2P read 1 GiB with no-byte-lost checker',
  `${G(checkedGiBPerSec)} (per CPU-s: ${G(perSec(1, checked.cpuMs))})`,
);

// Solver under load: 4096 concurrent flows among 64 endpoints through one root complex.
{
  const e = new Engine(SEED);
  const m = new FlowModel(e);
  const root = m.addResource('root complex', 64, 200);
  const eff = pcieLinkRate(4, 16).effectiveGBps;
  const ups = Array.from({ length: 64 }, (_, i) => m.addResource(`ep${i} up`, eff, 100));
  const downs = Array.from({ length: 64 }, (_, i) => m.addResource(`ep${i} down`, eff, 100));
  const r = measure(() => {
    for (let i = 0; i < 4096; i++) {
      const s = e.prng.below(64);
      const d = (s + 1 + e.prng.below(63)) % 64;
      m.startFlow({ path: [ups[s]!, root, downs[d]!], size: bytes(4096 * (1 + e.prng.below(256))) });
    }
    e.run();
  });
  row(
    'solver: 4096 concurrent flows, 64 endpoints',
    `${r.ms.toFixed(0)} ms (CPU ${r.cpuMs.toFixed(0)} ms), ${m.solves} solves, ${m.completed} done`,
  );
}

// The built-in p2p-switch scenario end to end (boot, 64 MiB nvme0 -> CMB of nvme1 -> nvme1 with the
// kernel's O_DIRECT, block and NVMe driver paths, the controller model, byte verification).
const p2pSwitch = best(2, () => {
  const sc = resolveScenario('p2p-switch');
  if (sc === null) throw new Error('built-in scenario p2p-switch is missing');
  return runScenario(loadMachineFile(sc.machineRef), sc);
});
row(
  'dmasim run p2p-switch (128 MiB moved, verified)',
  `${p2pSwitch.ms.toFixed(0)} ms wall (CPU ${p2pSwitch.cpuMs.toFixed(0)} ms), verified: ${p2pSwitch.value.verified}`,
);

// Plain borders when the output is not a terminal (logs, CI, pipes): no colour codes.
const plainOutput = !process.stdout.isTTY || Boolean(process.env.NO_COLOR);
const table = new Table({
  head: ['measure', 'figure'],
  ...(plainOutput ? { style: { head: [], border: [] } } : {}),
});
for (const r of rows) table.push(r);
console.log(table.toString());
console.log(
  JSON.stringify({
    seed: SEED,
    eventsPerSec: Math.round(eventsPerSec),
    burstEventsPerSec: Math.round(burstPerSec),
    simGiBPerSec: Number(simGiBPerSec.toFixed(3)),
    bufferCopyGiBPerSec: Number(bufferCopyGiBPerSec.toFixed(3)),
    checkedSimGiBPerSec: Number(checkedGiBPerSec.toFixed(3)),
    eventsPerCpuSec: Math.round(perSec(steady.value, steady.cpuMs)),
    loadAverage: Number(loadavg()[0]!.toFixed(2)),
    p2pSwitchWallMs: Math.round(p2pSwitch.ms),
  }),
);
