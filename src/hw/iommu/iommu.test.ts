import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, physAddr } from '../addr.js';
import { IommuUnit } from './iommu.js';
import { SZ_2M, SZ_4K } from './page-table.js';

const NVME = '0000:03:00.0';
const GPU = '0000:04:00.0';
const RW = { read: true, write: true };

function unit(): IommuUnit {
  return new IommuUnit({ name: 'iommu0', iotlb: { entries: 64 } });
}

function paging(u: IommuUnit, requester = NVME): number {
  const id = u.allocDomain('paging')!;
  u.attach(requester, id);
  return id;
}

describe('IommuUnit.translate', () => {
  it('translates through the page table, merging physically contiguous pages', () => {
    const u = unit();
    const d = paging(u);
    u.map(d, 0x10000n, 0x5000n, SZ_4K, 2, RW);
    u.map(d, 0x12000n, 0x9000n, SZ_4K, 1, RW);
    const r = u.translate(NVME, dmaAddr(0x10800), bytes(0x2000), 'write');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.ranges).toEqual([
      { phys: physAddr(0x5800), len: bytes(0x1800) },
      { phys: physAddr(0x9000), len: bytes(0x800) },
    ]);
    expect(r).toMatchObject({ iotlbMisses: 3, iotlbHits: 0, walkLevels: 12 });
    const again = u.translate(NVME, dmaAddr(0x10000), bytes(0x3000), 'read');
    expect(again).toMatchObject({ ok: true, iotlbHits: 3, iotlbMisses: 0, walkLevels: 0 });
  });

  it('a 2 MiB block costs one lookup and one 3-level walk for a 1 MiB DMA', () => {
    const u = unit();
    const d = paging(u);
    u.map(d, SZ_2M, 0x4000_0000n, SZ_2M, 1, RW);
    const r = u.translate(NVME, dmaAddr(SZ_2M + 0x1000n), bytes(0x10_0000), 'read');
    expect(r).toMatchObject({ ok: true, iotlbMisses: 1, iotlbHits: 0, walkLevels: 3 });
    if (r.ok) expect(r.ranges).toEqual([{ phys: physAddr(0x4000_1000), len: bytes(0x10_0000) }]);
  });

  it('records a not-present fault and returns nothing of the access', () => {
    const u = unit();
    const d = paging(u);
    u.map(d, 0x1000n, 0x1000n, SZ_4K, 1, RW);
    const r = u.translate(NVME, dmaAddr(0x1800), bytes(0x1000), 'read');
    expect(r.ok).toBe(false);
    expect(r).not.toHaveProperty('ranges');
    const fault = {
      requester: NVME,
      iova: dmaAddr(0x2000),
      access: 'read',
      reason: 'not-present',
      domainId: d,
    };
    if (!r.ok) expect(r.fault).toEqual(fault);
    expect(u.faults).toEqual([fault]);
  });

  it('records a permission fault for a write to a read-only page', () => {
    const u = unit();
    const d = paging(u);
    u.map(d, 0x1000n, 0x7000n, SZ_4K, 1, { read: true, write: false });
    expect(u.translate(NVME, dmaAddr(0x1000), bytes(8), 'read').ok).toBe(true);
    const r = u.translate(NVME, dmaAddr(0x1000), bytes(8), 'write');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.fault.reason).toBe('permission');
    expect(u.faults.map((f) => f.reason)).toEqual(['permission']);
  });

  it('faults unattached requesters and blocked domains with no-domain', () => {
    const u = unit();
    const r = u.translate(GPU, dmaAddr(0), bytes(4), 'read');
    if (!r.ok) expect(r.fault).toMatchObject({ reason: 'no-domain', domainId: null });
    const b = u.allocDomain('blocked')!;
    u.attach(GPU, b);
    const r2 = u.translate(GPU, dmaAddr(0), bytes(4), 'write');
    if (!r2.ok) expect(r2.fault).toMatchObject({ reason: 'no-domain', domainId: b });
    expect(u.faults).toHaveLength(2);
  });

  it('passes identity domains through untouched', () => {
    const u = unit();
    const id = u.allocDomain('identity')!;
    u.attach(GPU, id);
    const r = u.translate(GPU, dmaAddr(0x1234_5678), bytes(100), 'write');
    expect(r).toMatchObject({ ok: true, ranges: [{ phys: physAddr(0x1234_5678), len: bytes(100) }] });
    expect(u.iotlb.stats.hits + u.iotlb.stats.misses).toBe(0);
  });

  it('lets a stale IOTLB entry through after unmap until the range is invalidated', () => {
    const u = unit();
    const d = paging(u);
    u.map(d, 0x1000n, 0xa000n, SZ_4K, 1, RW);
    expect(u.translate(NVME, dmaAddr(0x1000), bytes(64), 'write').ok).toBe(true);
    expect(u.unmap(d, 0x1000n, SZ_4K, 1).unmappedBytes).toBe(SZ_4K);
    const stale = u.translate(NVME, dmaAddr(0x1000), bytes(64), 'write');
    expect(stale).toMatchObject({ ok: true, staleHits: 1 });
    if (stale.ok) expect(stale.ranges[0]!.phys).toBe(physAddr(0xa000));
    expect(u.iotlb.stats.staleHits).toBe(1);
    u.invalidateRange(d, 0x1000n, SZ_4K);
    const gone = u.translate(NVME, dmaAddr(0x1000), bytes(64), 'write');
    expect(gone.ok).toBe(false);
    if (!gone.ok) expect(gone.fault.reason).toBe('not-present');
  });

  it('keeps domains apart in the IOTLB and bounds the fault log', () => {
    const u = new IommuUnit({ name: 'iommu1', iotlb: { entries: 8, ways: 2 }, faultLogLimit: 2 });
    const a = paging(u, NVME);
    const b = paging(u, GPU);
    u.map(a, 0x1000n, 0x1000n, SZ_4K, 1, RW);
    u.map(b, 0x1000n, 0x8000n, SZ_4K, 1, RW);
    const ra = u.translate(NVME, dmaAddr(0x1000), bytes(8), 'read');
    const rb = u.translate(GPU, dmaAddr(0x1000), bytes(8), 'read');
    if (ra.ok && rb.ok) expect([ra.ranges[0]!.phys, rb.ranges[0]!.phys]).toEqual([0x1000n, 0x8000n]);
    else expect.unreachable('both translate');
    for (let i = 0; i < 3; i++) u.translate(NVME, dmaAddr(0x9000), bytes(8), 'read');
    expect(u.faults).toHaveLength(2);
    expect(u.faultsDropped).toBe(1);
    expect(() => u.freeDomain(a)).toThrow(/still attached/);
    u.detach(NVME);
    u.freeDomain(a);
    expect(u.allocDomain('paging')).toBe(a);
  });

  it('faults an IOVA beyond the input address size', () => {
    const u = unit();
    paging(u);
    const r = u.translate(NVME, dmaAddr(1n << 48n), bytes(8), 'read');
    if (!r.ok) expect(r.fault.reason).toBe('not-present');
    else expect.unreachable('must fault');
  });
});
