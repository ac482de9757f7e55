// Benchmark of the fabric: simulated GiB/s of large sequential peer reads (a GPU copy engine reading a
// peer's BAR under the same switch, and across root ports through the root complex), plus how fast
// the simulation runs (wall-clock seconds, engine events). Figures only, never pass/fail.
// Run: npx tsx bench/fabric.bench.ts

import { bytes, dmaAddr, GiB, MiB } from '../src/hw/addr.js';
import type { CopyResult } from '../src/hw/devices/dma-engine.js';
import { Gpu } from '../src/hw/devices/gpu.js';
import { buildFabric } from '../src/hw/fabric/fabric.js';
import { switchBox } from '../src/hw/fabric/test-machines.js';
import { Engine } from '../src/sim/engine.js';
import { FlowModel } from '../src/sim/flow.js';
import { pcieLinkRate } from '../src/sim/link-rate.js';

function peerRead(label: string, from: string, to: string, totalBytes: bigint, chunkBytes: number): void {
  const e = new Engine(1);
  const fab = buildFabric(switchBox(), { flows: new FlowModel(e), linkRate: pcieLinkRate });
  const reader = new Gpu(fab, fab.machine.byName.get(from)!, { chunkBytes, queueDepth: 8 });
  const source = fab.machine.byName.get(to)!;
  const srcBar = source.bars.find((b) => b.index === (source.hints?.cmb?.bar ?? source.hints?.vram?.bar))!;
  // bigints: Math.min does not apply.
  let span: bigint = GiB;
  if (srcBar.size < span) span = srcBar.size;
  const copies = Number(totalBytes / span);
  const results: CopyResult[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < copies; i++)
    reader.copyToVram(dmaAddr(srcBar.busStart), 0, bytes(span), (r) => results.push(r));
  e.run();
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const simS = Math.max(...results.map((r) => r.endNs)) / 1e9;
  const gib = Number(totalBytes) / Number(GiB);
  const c = fab.counters();
  console.log(
    `${label.padEnd(46)} ${(gib / simS).toFixed(2).padStart(7)} GiB/s simulated | ${wallS.toFixed(2)} s wall, ` +
      `${e.eventsFired} events, root complex ${(c.rootComplexBytes / Number(GiB)).toFixed(1)} GiB`,
  );
}

console.log(
  `Gen4 x16 effective: ${(pcieLinkRate(4, 16).effectiveGBps / 1.073741824).toFixed(2)} GiB/s per direction`,
);
peerRead(
  'GPU 04 reads NVMe 03 CMB (same switch), 16 GiB',
  '0000:04:00.0',
  '0000:03:00.0',
  16n * GiB,
  1 << 20,
);
peerRead('GPU 04 reads GPU 06 VRAM (via RC), 16 GiB', '0000:04:00.0', '0000:06:00.0', 16n * GiB, 1 << 20);
peerRead(
  'GPU 04 reads GPU 06 VRAM, 4 MiB chunks',
  '0000:04:00.0',
  '0000:06:00.0',
  16n * GiB,
  4 * Number(MiB),
);
