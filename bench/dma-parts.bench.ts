// Benchmark of the DMA core's data structures: bytes per entry of each phyr layout at 1 M entries
// (typed-array byteLength), and ns per operation of the IOVA allocator (1-page alloc_iova_fast /
// free_iova_fast through the range cache, and tree-only allocations). Figures only, never pass/fail.
// Run: npx tsx bench/dma-parts.bench.ts

import { bytes, dmaAddr, PAGE_SIZE_N, physAddr } from '../src/hw/addr.js';
import {
  allocIova,
  allocIovaFast,
  freeIova,
  freeIovaFast,
  initIovaDomain,
  iovaDomainInitRcaches,
} from '../src/kernel/iommu/iova.js';
import {
  DmaRangeList,
  NO_PGMAP,
  PhyrSingle,
  phyrPages8FromPfns,
  phyrRanges16Build,
} from '../src/kernel/lib/phyr.js';

const N = 1 << 20;

function line(label: string, value: string): void {
  console.log(`${label.padEnd(58)} ${value}`);
}

function time(label: string, n: number, body: (i: number) => void): void {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) body(i);
  const ns = Number(process.hrtime.bigint() - t0) / n;
  line(label, `${ns.toFixed(0).padStart(7)} ns/op  (${n} ops)`);
}

console.log(`phyr layouts, ${N} entries (every other page, so nothing merges)`);
const t0 = process.hrtime.bigint();
const p8 = phyrPages8FromPfns(
  (function* () {
    for (let i = 0; i < N; i++) yield 2 * i;
  })(),
  0,
  bytes(BigInt(N) * PAGE_SIZE_N),
  NO_PGMAP,
);
if (!p8.ok) throw new Error(p8.detail);
line('pages8 build', `${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0)} ms`);
line('pages8 bytes/entry', (p8.value.bytesUsed() / N).toFixed(3));
const r16 = phyrRanges16Build(
  (function* () {
    for (let i = 0; i < N; i++)
      yield { phys: physAddr(BigInt(2 * i) * PAGE_SIZE_N), len: bytes(PAGE_SIZE_N) };
  })(),
  NO_PGMAP,
);
line('ranges16 bytes/entry', (r16.bytesUsed() / N).toFixed(3));
line(
  'single bytes/list (one range of 4 GiB)',
  `${new PhyrSingle(physAddr(0), bytes(BigInt(N) * PAGE_SIZE_N)).bytesUsed()}`,
);
const dl = new DmaRangeList();
for (let i = 0; i < N; i++) dl.push(dmaAddr(BigInt(i) * 8192n), bytes(4096));
dl.trim();
line('DmaRangeList bytes/entry', (dl.bytesUsed() / N).toFixed(3));
const c = p8.value.cursor();
const tc = process.hrtime.bigint();
let ranges = 0;
for (; !c.done; c.advance()) ranges++;
line(
  'pages8 cursor walk',
  `${(Number(process.hrtime.bigint() - tc) / N).toFixed(0)} ns/entry (${ranges} ranges)`,
);

console.log('\nIOVA allocator (4 KiB granule, 64-bit limit, 2 CPUs)');
const LIMIT64 = 2 ** 52 - 1;
const d = initIovaDomain(bytes(4096), 1);
iovaDomainInitRcaches(d, 2);
time('alloc_iova_fast + free_iova_fast, 1 page (rcache hits)', 1_000_000, (i) => {
  const r = allocIovaFast(d, 1, LIMIT64, true, i & 1);
  if (!r.ok) throw new Error(r.detail);
  freeIovaFast(d, r.value, 1, i & 1);
});
line('  rcache hits / misses (bucket 0)', `${d.stats.hits[0]} / ${d.stats.misses[0]}`);

const live: number[] = [];
time('alloc_iova_fast, 1 page, 200 k live (misses: tree)', 200_000, () => {
  const r = allocIovaFast(d, 1, LIMIT64, true, 0);
  if (!r.ok) throw new Error(r.detail);
  live.push(r.value);
});
time('free_iova_fast, 1 page, 200 k (into magazines/depot)', 200_000, (i) => freeIovaFast(d, live[i]!, 1, 0));

const t = initIovaDomain(bytes(4096), 1);
const tree: number[] = [];
time('alloc_iova (tree only), 1 page, 262,144 live', 262_144, () => {
  const r = allocIova(t, 1, LIMIT64, true);
  if (!r.ok) throw new Error(r.detail);
  tree.push(r.value.pfnLo);
});
time('free_iova (tree only), every other of them', 131_072, (i) => freeIova(t, tree[2 * i]!));
time('alloc_iova (tree only) into the freed holes, 1 page', 131_072, () => {
  const r = allocIova(t, 1, LIMIT64, true);
  if (!r.ok) throw new Error(r.detail);
});
const big = initIovaDomain(bytes(4096), 1);
time('alloc_iova of 1 GiB (262,144 pages) + free', 1000, () => {
  const r = allocIova(big, 262_144, LIMIT64, true);
  if (!r.ok) throw new Error(r.detail);
  freeIova(big, r.value.pfnLo);
});
