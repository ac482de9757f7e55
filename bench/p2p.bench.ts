// bench:p2p — the all-pairs P2P matrix of a 4,096-endpoint machine, and loading it as a snapshot.
//
// The machine: switch trees (depth 1-3) under root ports under 8 host bridges, a quarter of the ports
// with ACS redirect, built by generateMachine. Timed: the full ordered-pair matrix (16.7 M pairs) from
// the kernel-equivalent tables, a sample through the faithful calc_map_type_and_dist walk for
// comparison, and openSnapshot() of the same machine written as a .tar.gz snapshot. Figures only.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { computeP2pMatrix, endpointsOf, prepareP2pTables } from '../src/analysis/p2p-matrix.js';
import { calcMapTypeAndDist, createP2pdmaContext } from '../src/kernel/pci/p2pdma.js';
import { generateMachine } from '../src/topology/machine-file/index.js';
import { openSnapshot } from '../src/topology/sysfs/index.js';
import { writeSnapshotTar } from '../src/topology/sysfs/write-snapshot.js';

const ENDPOINTS = Number(process.env.ENDPOINTS ?? 4096);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const now = (): number => performance.now();

const t0 = now();
const machine = generateMachine({ endpoints: ENDPOINTS, hostBridges: 8, seed: 42, acsFraction: 0.25 });
const buildMs = now() - t0;
const eps = endpointsOf(machine);
const pairs = eps.length * eps.length;
console.log(
  `machine: ${machine.functions.length} functions, ${eps.length} endpoints, ${machine.hostBridges.length} host bridges (built in ${buildMs.toFixed(0)} ms)`,
);

// The snapshot first (a fresh heap: the matrices below would only add GC work to its figure).
// The snapshot: write, then load it three times.
const dir = mkdtempSync(join(tmpdir(), 'dmasim-bench-'));
const file = join(dir, 'big.tar.gz');
let s = now();
const gz = gzipSync(writeSnapshotTar(machine, 'big'));
writeFileSync(file, gz);
const writeMs = now() - s;
const loads: number[] = [];
const loadCpu: number[] = [];
let loadedFns = 0;
for (let r = 0; r < 3; r++) {
  s = now();
  const c0 = process.cpuUsage();
  const back = await openSnapshot(file);
  const c1 = process.cpuUsage(c0);
  loads.push(now() - s);
  loadCpu.push((c1.user + c1.system) / 1000);
  loadedFns = back.functions.length;
}
rmSync(dir, { recursive: true, force: true });
const loadMs = median(loads);

// All pairs, three runs; the median counts.
const ctx = createP2pdmaContext(machine, 'newest');
const runs: number[] = [];
let counts = [0, 0, 0, 0];
for (let r = 0; r < 3; r++) {
  const s = now();
  const t = prepareP2pTables(ctx);
  const m = computeP2pMatrix(t, eps);
  runs.push(now() - s);
  counts = [0, 0, 0, 0];
  for (const c of m.mapCode) counts[c]!++;
}
const matrixMs = median(runs);
const pairsPerSec = pairs / (matrixMs / 1000);

// The faithful kernel walk on a sample, for comparison (same answers, object chains).
const sample = 200_000;
s = now();
for (let k = 0; k < sample; k++) {
  const p = eps[(k * 7919) % eps.length]!;
  const c = eps[(k * 104729) % eps.length]!;
  calcMapTypeAndDist(ctx, p, c, false);
}
const walkPairsPerSec = sample / ((now() - s) / 1000);

console.log('');
console.log(
  `all pairs:          ${pairs.toLocaleString()} ordered pairs in ${matrixMs.toFixed(0)} ms (median of 3) = ${(pairsPerSec / 1e6).toFixed(1)} M pairs/s`,
);
console.log(`  bus-addr ${counts[2]}, thru-host-bridge ${counts[3]}, not-supported ${counts[1]}`);
console.log(
  `faithful walk:      ${(walkPairsPerSec / 1e6).toFixed(2)} M pairs/s (calc_map_type_and_dist on ${sample.toLocaleString()} sampled pairs)`,
);
console.log(
  `snapshot:           ${(gz.length / 1e6).toFixed(2)} MB .tar.gz written in ${writeMs.toFixed(0)} ms; openSnapshot ${loadMs.toFixed(0)} ms wall, ${median(loadCpu).toFixed(0)} ms CPU (median of 3, ${loadedFns} functions)`,
);
console.log(
  JSON.stringify({
    endpoints: eps.length,
    functions: machine.functions.length,
    pairs,
    pairsPerSec: Math.round(pairsPerSec),
    matrixMs: Math.round(matrixMs),
    walkPairsPerSec: Math.round(walkPairsPerSec),
    loadMs: Math.round(loadMs),
    loadCpuMs: Math.round(median(loadCpu)),
    snapshotBytes: gz.length,
  }),
);
