// The GPU's dma-buf exporter: P2P importers get VRAM through the BAR (bus address or IOVA), others get
// GTT pages; pin-on-map keeps a static importer's buffer in place; an unbalanced unpin is reported with
// the call; and a CPU mapping faults, is zapped by a move, and restarts onto the new placement.

import { describe, expect, it } from 'vitest';
import { bytes, GiB, MiB, physAddr } from '../../../hw/addr.js';
import { Gpu } from '../../../hw/devices/gpu.js';
import { fabricDma } from '../../../hw/fabric/data-path.js';
import { switchBox, UNKNOWN_CPU } from '../../../hw/fabric/test-machines.js';
import { SparseMemory } from '../../../hw/memory/sparse-memory.js';
import { sleep } from '../../../sim/task.js';
import { dmaDeviceOf } from '../../dma/dma-context.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaSetMaskAndCoherent } from '../../dma/mapping.js';
import { dmaBufAttach, dmaBufDynamicAttach, dmaBufUnpin } from '../../dma-buf/dma-buf.js';
import { dmaBufMapAttachmentUnlocked, dmaBufUnmapAttachmentUnlocked } from '../../dma-buf/dma-buf-map.js';
import { dmaBufCpuAccess, dmaBufMmap } from '../../dma-buf/dma-buf-mmap.js';
import { dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { kthreadRun, runNonBlocking } from '../../dma-buf/sched.js';
import { forEachSgtableDmaSg } from '../../lib/scatterlist.js';
import { kernelOnFabric } from '../kernel-on-fabric.js';
import { amdgpuBoCreate, gpuDeviceInit, gpuResourcePhys, ttmBoValidate } from './gpu-bo.js';
import { amdgpuGemPrimeExport } from './gpu-dmabuf.js';

const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
const run = runNonBlocking;
const SIZE = 2n * MiB;

function rig(o: { iommu?: 'off' | 'strict'; unknownCpu?: boolean } = {}) {
  const r = kernelOnFabric(switchBox(o.unknownCpu ? { cpu: UNKNOWN_CPU } : {}), { iommu: o.iommu ?? 'off' });
  const gdev = gpuDeviceInit(r.k, new Gpu(r.fab, r.fn('0000:04:00.0')), r.tl);
  const bo = run(amdgpuBoCreate(gdev, 'bo0', SIZE, 'vram'));
  if (!bo.ok) throw new Error(bo.detail);
  const data = pattern(Number(SIZE), 5);
  r.k.dma.memory.write(physAddr(gpuResourcePhys(gdev, bo.value.res)), data);
  const d = amdgpuGemPrimeExport(bo.value);
  if (!d.ok) throw new Error(d.detail);
  const importer = (name: string) => {
    const dev = dmaDeviceOf(r.k.dma, r.fn(name));
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    return dev;
  };
  return { ...r, gdev, bo: bo.value, dmabuf: d.value, data, importer };
}

const dyn = { allow_peer2peer: true, invalidate_mappings: () => {}, move_notify: () => {} };

describe('amdgpu dma-buf exporter', () => {
  it.each(['off', 'strict'] as const)(
    'IOMMU %s: a P2P NIC maps VRAM and reads the bytes through the fabric',
    (iommu) => {
      const { engine, fab, dmabuf, data, importer, fn } = rig({ iommu });
      const nic = importer('0000:05:00.0');
      const a = run(dmaBufDynamicAttach(dmabuf, nic, dyn));
      if (!a.ok) throw new Error(a.detail);
      expect(a.value.peer2peer).toBe(true);
      const m = run(dmaBufMapAttachmentUnlocked(a.value, 'to-device'));
      if (!m.ok) throw new Error(m.detail);
      const [sg] = [...forEachSgtableDmaSg(m.value)];
      expect([sg!.pfn, sg!.dmaLength]).toEqual([null, Number(SIZE)]);
      if (iommu === 'off') expect(sg!.dmaAddress).toBe(0x200000000000n + GiB);
      const dst = new SparseMemory('nic', 'bar', bytes(SIZE));
      let ok = false;
      fabricDma(
        fab,
        {
          requester: fn('0000:05:00.0'),
          kind: 'read',
          addr: sg!.dmaAddress,
          len: bytes(SIZE),
          local: { kind: 'memory', mem: dst, offset: 0 },
        },
        (o) => {
          ok = o.ok;
        },
      );
      engine.run();
      expect(ok).toBe(true);
      expect(same(dst.readBytes(0, data.length), data)).toBe(true);
      run(dmaBufUnmapAttachmentUnlocked(a.value, m.value, 'to-device'));
    },
  );

  it('an importer that cannot reach the GPU peer to peer gets GTT pages (the buffer migrates at map)', () => {
    const { engine, k, world, dmabuf, bo, data, importer } = rig({ unknownCpu: true });
    const other = importer('0000:06:00.0');
    let domain = '';
    let addrs: bigint[] = [];
    kthreadRun(
      world,
      'importer',
      (function* () {
        const a = yield* dmaBufDynamicAttach(dmabuf, other, dyn);
        if (!a.ok) throw new Error(a.detail);
        expect(a.value.peer2peer).toBe(false);
        const m = yield* dmaBufMapAttachmentUnlocked(a.value, 'bidirectional');
        if (!m.ok) throw new Error(m.detail);
        domain = bo.res.domain;
        addrs = [...forEachSgtableDmaSg(m.value)].map((sg) => sg.dmaAddress);
      })(),
    );
    engine.run();
    expect(domain).toBe('gtt');
    expect(addrs).toEqual([gpuResourcePhys(bo.gdev, bo.res)]);
    expect(same(k.dma.memory.read(physAddr(addrs[0]!), data.length), data)).toBe(true);
  });

  it('a static importer (never peer2peer) is pinned on map into GTT; it stays there until unmapped', () => {
    const { engine, world, dmabuf, bo, importer } = rig();
    const out: string[] = [];
    kthreadRun(
      world,
      'flow',
      (function* () {
        const a = yield* dmaBufAttach(dmabuf, importer('0000:05:00.0'));
        if (!a.ok) throw new Error(a.detail);
        const m = yield* dmaBufMapAttachmentUnlocked(a.value, 'to-device');
        if (!m.ok) throw new Error(m.detail);
        out.push(`${bo.res.domain} pin=${bo.pinCount}`);
        yield* dmaResvLock(bo.resv, null);
        const v = yield* ttmBoValidate(bo, ['vram']);
        dmaResvUnlock(bo.resv);
        out.push(v.ok ? 'moved' : v.errno);
        yield* dmaBufUnmapAttachmentUnlocked(a.value, m.value, 'to-device');
        yield* dmaResvLock(bo.resv, null);
        const w = yield* ttmBoValidate(bo, ['vram']);
        dmaResvUnlock(bo.resv);
        out.push(`${w.ok ? 'moved' : w.errno} pin=${bo.pinCount} ${bo.res.domain}`);
      })(),
    );
    engine.run();
    expect(out).toEqual(['gtt pin=1', 'EINVAL', 'moved pin=0 vram']);
  });

  it('dma_buf_unpin without a pin: the exporter WARNs, the report names the importer call', () => {
    const { world, dmabuf, importer } = rig();
    const a = run(dmaBufDynamicAttach(dmabuf, importer('0000:05:00.0'), dyn));
    if (!a.ok) throw new Error(a.detail);
    run(dmaResvLock(dmabuf.resv, null));
    dmaBufUnpin(a.value);
    dmaResvUnlock(dmabuf.resv);
    expect(world.warnings.map((w) => [w.func, w.message, w.call])).toEqual([
      ['ttm_bo_unpin', 'WARN_ON_ONCE(!bo->pin_count)', 'dma_buf_unpin(attach=0000:05:00.0:amdgpu)'],
    ]);
  });

  it('a CPU mapping faults, is zapped by an eviction, and restarts onto the GTT copy', () => {
    const { engine, k, world, dmabuf, bo, gdev, data } = rig();
    const vma = dmaBufMmap(dmabuf, Number(SIZE / 4096n), 0);
    if (!vma.ok) throw new Error(vma.detail);
    const reads: string[] = [];
    kthreadRun(
      world,
      'cpu',
      (function* () {
        for (let i = 0; i < 8; i++) {
          const off = i * 256 * 1024;
          const r = yield* dmaBufCpuAccess(vma.value, k.dma.memory, off, 4096);
          if (!r.ok) throw new Error(r.detail);
          reads.push(`${same(r.value, data.subarray(off, off + 4096))}`);
          yield sleep(20_000);
        }
      })(),
    );
    kthreadRun(
      world,
      'pressure',
      (function* () {
        yield sleep(50_000);
        yield* amdgpuBoCreate(gdev, 'p', GiB - MiB, 'vram');
      })(),
    );
    engine.run();
    expect(reads).toEqual(Array(8).fill('true'));
    expect(bo.res.domain).toBe('gtt');
    expect(vma.value.stats.zaps).toBe(1);
    expect(vma.value.stats.faults).toBeGreaterThan(8);
    expect(vma.value.stats.retries).toBeGreaterThanOrEqual(1);
    // Every pte now points at the GTT pages.
    for (const phys of vma.value.ptes.values()) expect(phys >= gpuResourcePhys(gdev, bo.res)).toBe(true);
  });

  it('dma_buf_mmap checks the range against the buffer', () => {
    const { dmabuf } = rig();
    expect(dmaBufMmap(dmabuf, 513, 0)).toMatchObject({ errno: 'EINVAL' });
    expect(dmaBufMmap(dmabuf, 1, 512)).toMatchObject({ errno: 'EINVAL' });
    expect(dmaBufMmap(dmabuf, 2, Number.MAX_SAFE_INTEGER)).toMatchObject({ errno: 'EINVAL' });
  });
});
