import { describe, expect, it } from 'vitest';
import { bytes, MiB } from '../../hw/addr.js';
import { dmaDeviceOf } from '../dma/dma-context.js';
import { dmaTestKernel, fnOf, TB_ROOT_PORT, TB_SWITCH_A, TB_SWITCH_B } from '../dma/dma-testbed.js';
import { DMA_BIT_MASK } from '../dma/dma-types.js';
import { dmaUseIova, newDmaIovaState } from '../dma/iova-api.js';
import { dmaSetMaskAndCoherent } from '../dma/mapping.js';
import type { Kernel } from '../kernel.js';
import { pfnToPage } from '../mm/page.js';
import { pciP2pdmaAddResource } from '../pci/p2pdma-provider.js';
import { bioAddPage, bioAlloc } from './bio.js';
import { blkMqAllocQueue, type Request } from './blk-mq.js';
import {
  blkDmaUnmap,
  blkRqDmaMapCoalesce,
  blkRqDmaMapIterNext,
  blkRqDmaMapIterStart,
  newBlkDmaIter,
} from './blk-mq-dma.js';

const PAGE = 4096;

function request(k: Kernel, pfns: readonly number[], op: 'read' | 'write' = 'read'): Request {
  const q = blkMqAllocQueue({
    name: 'nvme1n1',
    limits: {
      logicalBlockSize: 512,
      maxHwSectors: 2048,
      maxSectors: 2048,
      maxSegments: 128,
      maxSegmentSize: 0xffff_ffff,
      segBoundaryMask: 0xffff_ffffn,
      virtBoundaryMask: 4095,
      dmaAlignment: 3,
      pciP2pdma: true,
    },
    ops: { queueRq: () => 'ok' },
    depth: 4,
    capacitySectors: 1 << 20,
    engine: k.engine,
    log: k.log,
    kmm: k.mm,
  });
  const bio = bioAlloc(q, pfns.length, op);
  for (const pfn of pfns) expect(bioAddPage(bio, pfnToPage(k.mm, pfn)!, PAGE, 0)).toBe(PAGE);
  return {
    q,
    bio,
    op,
    cmdFlags: bio.opf,
    sector: 0,
    dataLen: bio.size,
    nrPhysSegments: 1,
    tag: 0,
    pdu: null,
    submitNs: 0,
  };
}

/** Map the whole request; @returns the ranges, or the status when the start failed. */
function mapAll(k: Kernel, rq: Request, client: string) {
  const dev = dmaDeviceOf(k.dma, fnOf(k, client));
  expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true); // as nvme_pci_enable() does
  const state = newDmaIovaState();
  const it = newBlkDmaIter(rq);
  const ranges: [bigint, number][] = [];
  if (!blkRqDmaMapIterStart(rq, dev, state, it)) return { status: it.status, ranges, state, it, dev };
  do ranges.push([it.addr, it.len]);
  while (blkRqDmaMapIterNext(rq, dev, state, it));
  return { status: it.status, ranges, state, it, dev };
}

function provider(k: Kernel): number {
  const ep = fnOf(k, TB_SWITCH_A);
  expect(pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n).ok).toBe(true);
  return k.mm.pgmaps.all()[0]!.firstPfn;
}

describe('blk_rq_dma_map_iter', () => {
  it('dma-direct: one range per physically contiguous run', () => {
    const k = dmaTestKernel();
    const r = mapAll(k, request(k, [0x200000, 0x200001, 0x200002, 0x300000]), TB_SWITCH_B);
    expect(r.status).toBe('ok');
    expect(r.ranges).toEqual([
      [0x200000n << 12n, 3 * PAGE],
      [0x300000n << 12n, PAGE],
    ]);
    expect(blkRqDmaMapCoalesce(r.state)).toBe(false);
  });

  it('dma-iommu: every segment linked into one IOVA range, destroyed at unmap', () => {
    const k = dmaTestKernel({ iommu: 'strict' });
    const rq = request(k, [0x200000, 0x300000, 0x400000]);
    const r = mapAll(k, rq, TB_SWITCH_B);
    expect(r.status).toBe('ok');
    expect(r.ranges).toHaveLength(1);
    expect(r.ranges[0]![1]).toBe(3 * PAGE);
    expect(dmaUseIova(r.state)).toBe(true);
    expect(r.ranges[0]![0] >> 32n).toBe(0n); // IOVAs below 4 GiB first for PCI devices
    expect(blkDmaUnmap(rq, r.dev, r.state, bytes(3 * PAGE), r.it.p2pdma.map)).toBe(true);
  });

  it('P2P under one switch: bus addresses, no IOVA even behind an IOMMU', () => {
    const k = dmaTestKernel({ iommu: 'strict' });
    const first = provider(k);
    const rq = request(k, [first, first + 1, first + 2]);
    const r = mapAll(k, rq, TB_SWITCH_B);
    expect(r.it.p2pdma.map).toBe('bus-addr');
    expect(r.ranges).toEqual([[BigInt(first) << 12n, 3 * PAGE]]); // testbed bus offset 0
    expect(dmaUseIova(r.state)).toBe(false);
    expect(blkDmaUnmap(rq, r.dev, r.state, bytes(3 * PAGE), r.it.p2pdma.map)).toBe(true);
  });

  it('P2P through a whitelisted host bridge: mapped like RAM (IOVA behind the IOMMU)', () => {
    const k = dmaTestKernel({ iommu: 'strict' });
    const first = provider(k);
    const r = mapAll(k, request(k, [first, first + 1]), TB_ROOT_PORT);
    expect(r.it.p2pdma.map).toBe('thru-host-bridge');
    expect(dmaUseIova(r.state)).toBe(true);
    expect(r.ranges).toHaveLength(1);
  });

  it('P2P the kernel refuses: BLK_STS_INVAL and nothing mapped', () => {
    const k = dmaTestKernel({ machine: { hostBridgeId: [0x8086, 0x1234] } });
    const first = provider(k);
    const r = mapAll(k, request(k, [first]), TB_ROOT_PORT);
    expect(r.status).toBe('inval');
    expect(r.ranges).toEqual([]);
    expect(
      k.log.lines.some((l) => /not in P2PDMA whitelist|cannot be used for peer-to-peer DMA/.test(l.text)),
    ).toBe(true);
  });
});
