// Benchmark of the IOMMU parts: ns per map+unmap of one 4 KiB page (page table alone, and through the
// kernel API with strict invalidation), and ns per translate (IOTLB hit, and miss + 4-level walk).
// Figures only, never pass/fail. Run: npx tsx bench/iommu-parts.bench.ts

import { bytes, dmaAddr, physAddr } from '../src/hw/addr.js';
import { IommuUnit } from '../src/hw/iommu/iommu.js';
import { IoPageTable, SZ_4K } from '../src/hw/iommu/page-table.js';
import { IOMMU_READ, IOMMU_WRITE, iommuMap, iommuUnmap } from '../src/kernel/iommu/iommu.js';
import { iommuDomainAlloc } from '../src/kernel/iommu/iommu-driver.js';

const DEV = '0000:03:00.0';
const RW = { read: true, write: true };

function time(label: string, n: number, body: (i: number) => void): void {
  for (let i = 0; i < Math.min(n, 10_000); i++) body(i); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) body(i);
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`${label.padEnd(52)} ${ns.toFixed(0).padStart(7)} ns/op  (${n} ops)`);
}

const N = 200_000;
const pages = 4096;

const pt = new IoPageTable();
time('page table: mapPages+unmapPages, one 4 KiB page', N, (i) => {
  const iova = BigInt((i % pages) * 4096);
  pt.mapPages(iova, iova + 0x1_0000_0000n, SZ_4K, 1, RW);
  pt.unmapPages(iova, SZ_4K, 1);
});

const unit = new IommuUnit({ name: 'bench', iotlb: { entries: 512, ways: 8 } });
const dom = iommuDomainAlloc(unit, 'dma');
if (!dom.ok) throw new Error(dom.detail);
const d = dom.value;
d.ops.attachDev(d, DEV);
time('kernel: iommu_map+iommu_unmap (strict), one 4 KiB page', N, (i) => {
  const iova = dmaAddr((i % pages) * 4096);
  iommuMap(d, iova, physAddr(0x1_0000_0000 + (i % pages) * 4096), bytes(4096), IOMMU_READ | IOMMU_WRITE);
  iommuUnmap(d, iova, bytes(4096));
});

// paddr offset by 4 KiB from 2 MiB alignment: the range is mapped with 4 KiB pages only.
iommuMap(d, dmaAddr(0), physAddr(0x1_0000_1000), bytes(pages * 4096), IOMMU_READ | IOMMU_WRITE);
const len = bytes(512);
time('translate: 512 B, IOTLB hit', N, (i) => {
  unit.translate(DEV, dmaAddr((i % 64) * 4096), len, 'read');
});
time('translate: 512 B, IOTLB miss + 4-level walk', N, (i) => {
  // Stride through more pages than the IOTLB holds, so nearly every access misses.
  unit.translate(DEV, dmaAddr(((i * 7) % pages) * 4096), len, 'write');
});
const s = unit.iotlb.stats;
console.log(`iotlb: ${s.hits} hits, ${s.misses} misses, ${s.evictions} evictions; walks ${unit.stats.walks}`);
