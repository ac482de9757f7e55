// Benchmark of the pfn -> pagemap -> provider lookup the DMA layer calls per page, with 1,000 P2PDMA
// providers registered (seed 001: "a fast lookup from a pfn to the device that provides it"), and of
// pfn_to_page() on top of it. Figures only, never pass/fail. Run: npx tsx bench/mm.bench.ts

import { bootKernel } from '../src/kernel/kernel.js';
import { pfnToPage } from '../src/kernel/mm/page.js';
import { p2pdmaDmaLookup } from '../src/kernel/pci/p2pdma-map.js';
import { pciP2pdmaAddResource } from '../src/kernel/pci/p2pdma-provider.js';
import { manyProvidersMachine } from '../src/kernel/pci/p2pdma-testbed.js';
import { Prng } from '../src/sim/prng.js';

const PROVIDERS = 1000;
const N = 2_000_000;

function time(label: string, n: number, body: (i: number) => unknown): void {
  let sink = 0;
  for (let i = 0; i < Math.min(n, 100_000); i++) if (body(i) !== null) sink++; // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (body(i) !== null) sink++;
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`${label.padEnd(60)} ${ns.toFixed(1).padStart(7)} ns/op  (${n} ops, ${sink} hits)`);
}

const k = bootKernel(manyProvidersMachine(PROVIDERS), { version: 'newest' });
for (const f of k.machine.functions) {
  const r = pciP2pdmaAddResource(k, f, 0, 0n, 0n);
  if (!r.ok) throw new Error(r.detail);
}
const pgmaps = k.mm.pgmaps.all();
const look = p2pdmaDmaLookup(k);
console.log(`${pgmaps.length} providers, 2 MiB each; seed 1`);

// Pfn streams prepared up front so the loop measures the lookup alone.
const prng = new Prng(1);
const random = Float64Array.from({ length: 65536 }, () => {
  const p = pgmaps[prng.below(pgmaps.length)]!;
  return p.firstPfn + prng.below(p.lastPfn - p.firstPfn + 1);
});
const sequential = Float64Array.from(
  { length: 65536 },
  (_, i) => pgmaps[(i >> 9) % pgmaps.length]!.firstPfn + (i & 511),
);
const ram = Float64Array.from({ length: 65536 }, () => 0x100000 + prng.below(0x300000));
const mask = 65535;

time('providerOfPfn, sequential pages of one buffer (cache hits)', N, (i) =>
  look.providerOfPfn(sequential[i & mask]!),
);
time('providerOfPfn, random pages over 1,000 providers', N, (i) => look.providerOfPfn(random[i & mask]!));
time('providerOfPfn, RAM pages (miss: not P2P memory)', N, (i) => look.providerOfPfn(ram[i & mask]!));
time('pfnToPage, random P2P pages (struct page made on first use)', N / 4, (i) =>
  pfnToPage(k.mm, random[i & mask]!),
);
