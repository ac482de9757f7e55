// GPU buffer objects: creation in VRAM, eviction to GTT under memory pressure (copy on the GPU's copy
// engine through the fabric, KERNEL fence, old VRAM retired once the copy is done), moving back, pins.

import { describe, expect, it } from 'vitest';
import { GiB, MiB, physAddr } from '../../../hw/addr.js';
import { Gpu } from '../../../hw/devices/gpu.js';
import { switchBox } from '../../../hw/fabric/test-machines.js';
import { dmaResvLock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { dmaResvTestSignaled } from '../../dma-buf/dma-resv-iter.js';
import { kthreadRun, runNonBlocking } from '../../dma-buf/sched.js';
import { kernelOnFabric } from '../kernel-on-fabric.js';
import {
  amdgpuBoCreate,
  amdgpuBoFree,
  gpuDeviceInit,
  gpuResourcePhys,
  ttmBoPin,
  ttmBoUnpin,
  ttmBoValidate,
} from './gpu-bo.js';

const pattern = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

function rig(iommu: 'off' | 'strict' = 'off') {
  const r = kernelOnFabric(switchBox(), { iommu });
  const hw = new Gpu(r.fab, r.fn('0000:04:00.0'));
  const gdev = gpuDeviceInit(r.k, hw, r.tl);
  return { ...r, gdev };
}

describe.each(['off', 'strict'] as const)('GPU buffer objects (IOMMU %s)', (iommu) => {
  it('memory pressure evicts the LRU buffer to GTT with its bytes, then the new buffer gets VRAM', () => {
    const { engine, k, gdev, tl } = rig(iommu);
    const bo = runNonBlocking(amdgpuBoCreate(gdev, 'bo0', 4n * MiB, 'vram'));
    if (!bo.ok) throw new Error(bo.detail);
    const data = pattern(Number(4n * MiB), 7);
    k.dma.memory.write(physAddr(gpuResourcePhys(gdev, bo.value.res)), data);
    const oldPhys = gpuResourcePhys(gdev, bo.value.res);
    let big: string = '';
    kthreadRun(
      gdev.world,
      'pressure',
      (function* () {
        const b = yield* amdgpuBoCreate(gdev, 'pressure', GiB - 2n * MiB, 'vram');
        big = b.ok ? b.value.res.domain : b.errno;
      })(),
    );
    engine.run();
    expect(big).toBe('vram');
    expect([bo.value.res.domain, bo.value.moves]).toEqual(['gtt', 1]);
    expect(same(k.dma.memory.read(physAddr(gpuResourcePhys(gdev, bo.value.res)), data.length), data)).toBe(
      true,
    );
    expect(dmaResvTestSignaled(bo.value.resv, 'kernel')).toBe(true);
    expect(gdev.retired.map((x) => [x.bo, x.domain, x.cpuStart, x.size])).toEqual([
      ['bo0', 'vram', oldPhys, 4n * MiB],
    ]);
    expect(tl.events.map((e) => e.what)).toEqual(['create', 'evict', 'move done', 'create']);
    // The copy took virtual time on the fabric, and the pressure allocation waited for it.
    expect(gdev.retired[0]!.sinceNs).toBeGreaterThan(0);
    expect(gdev.world.warnings).toEqual([]);
  });

  it('moves back to VRAM when asked and there is room; pinned buffers are not evicted', () => {
    const { engine, k, gdev } = rig(iommu);
    let out: string[] = [];
    kthreadRun(
      gdev.world,
      'driver',
      (function* () {
        const a = yield* amdgpuBoCreate(gdev, 'a', 2n * MiB, 'vram');
        const b = yield* amdgpuBoCreate(gdev, 'b', 2n * MiB, 'vram');
        if (!a.ok || !b.ok) throw new Error('create');
        k.dma.memory.write(physAddr(gpuResourcePhys(gdev, b.value.res)), pattern(4096, 3));
        yield* dmaResvLock(a.value.resv, null);
        ttmBoPin(a.value);
        dmaResvUnlock(a.value.resv);
        const p = yield* amdgpuBoCreate(gdev, 'p', GiB - 3n * MiB, 'vram');
        out.push(`${a.value.res.domain} ${b.value.res.domain}`);
        if (!p.ok) throw new Error(p.detail);
        amdgpuBoFree(p.value);
        yield* dmaResvLock(b.value.resv, null);
        const v = yield* ttmBoValidate(b.value, ['vram']);
        dmaResvUnlock(b.value.resv);
        out.push(`${v.ok} ${b.value.res.domain} ${b.value.moves}`);
        const more = yield* amdgpuBoCreate(gdev, 'q', GiB, 'vram');
        out.push(more.ok ? 'fit' : more.errno);
      })(),
    );
    engine.run();
    expect(out).toEqual(['vram gtt', 'true vram 2', 'ENOSPC']);
    const b = gdev.bos.find((x) => x.name === 'b')!;
    // Evicted again by the last attempt: the bytes followed it through three copies.
    expect(same(k.dma.memory.read(physAddr(gpuResourcePhys(gdev, b.res)), 4096), pattern(4096, 3))).toBe(
      true,
    );
    out = [];
  });

  it('an unbalanced unpin WARNs once in ttm_bo_unpin', () => {
    const { gdev } = rig(iommu);
    const bo = runNonBlocking(amdgpuBoCreate(gdev, 'bo', 4096n, 'gtt'));
    if (!bo.ok) throw new Error(bo.detail);
    runNonBlocking(dmaResvLock(bo.value.resv, null));
    ttmBoUnpin(bo.value);
    ttmBoUnpin(bo.value);
    dmaResvUnlock(bo.value.resv);
    expect(gdev.world.warnings.map((w) => [w.func, w.message])).toEqual([
      ['ttm_bo_unpin', 'WARN_ON_ONCE(!bo->pin_count)'],
    ]);
  });
});
