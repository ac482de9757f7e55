// Lock-ordering and lifetime misuse of the dma-buf API is reported like the kernel's WARN backtraces:
// the rule's text, the function that checks it, and the offending call with its arguments.

import { describe, expect, it } from 'vitest';
import { dmaAddr } from '../../hw/addr.js';
import { err, ok } from '../errno.js';
import { forEachSgtableSg, newSgTable, sgAllocTable } from '../lib/scatterlist.js';
import {
  type DmaBufAttachOps,
  type DmaBufOps,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufPut,
  dmaBufUnpin,
} from './dma-buf.js';
import { dmaBufInvalidateMappings, dmaBufMapAttachment, dmaBufUnmapAttachment } from './dma-buf-map.js';
import { dmaResvLock, dmaResvUnlock } from './dma-resv.js';
import { type KTaskOp, runNonBlocking } from './sched.js';
import { createDmaBufWorld, type DmaBufProfile } from './world.js';

const run = <T>(op: KTaskOp<T>): T => runNonBlocking(op);

function setup(profile: DmaBufProfile = 'newest') {
  const w = createDmaBufWorld({ profile });
  const ops: DmaBufOps = {
    pin: () => ok(undefined),
    unpin: () => {},
    map_dma_buf: () => {
      const sgt = newSgTable();
      sgAllocTable(sgt, 1, { version: w.profile });
      for (const sg of forEachSgtableSg(sgt)) {
        sg.dmaAddress = dmaAddr(0x10_0000);
        sg.dmaLength = 0x1000;
      }
      return ok(sgt);
    },
    unmap_dma_buf: () => {},
    release: () => {},
  };
  const r = dmaBufExport(w, { expName: 'bo0', sizeBytes: 0x1000, ops, priv: {} });
  if (!r.ok) throw new Error(r.detail);
  return { w, dmabuf: r.value };
}

const importer: DmaBufAttachOps = {
  allow_peer2peer: true,
  move_notify: () => {},
  invalidate_mappings: () => {},
};

describe('misuse is reported with the call', () => {
  it.each(['6.1', 'newest'] as const)('%s: mapping a dynamic attachment without the resv lock', (profile) => {
    const { w, dmabuf } = setup(profile);
    const a = run(dmaBufDynamicAttach(dmabuf, { name: 'mlx5_0' }, importer));
    if (!a.ok) throw new Error(a.detail);
    const m = run(dmaBufMapAttachment(a.value, 'bidirectional'));
    expect(m.ok).toBe(true);
    const report = {
      func: 'dma_buf_map_attachment',
      message: 'WARN_ON(debug_locks && !lockdep_is_held(&obj->lock.base))',
      call: 'dma_buf_map_attachment(attach=mlx5_0:bo0, dir=DMA_BIDIRECTIONAL)',
      backtrace: ['dma_buf_map_attachment(attach=mlx5_0:bo0, dir=DMA_BIDIRECTIONAL)'],
    };
    // 6.1 asserts twice: once for the dynamic importer, once more for the dynamic exporter.
    expect(w.warnings).toEqual(profile === '6.1' ? [report, report] : [report]);
    // The same map under the lock is clean.
    w.warnings.length = 0;
    run(dmaResvLock(dmabuf.resv, null));
    if (m.ok) dmaBufUnmapAttachment(a.value, m.value, 'bidirectional');
    dmaResvUnlock(dmabuf.resv);
    expect(w.warnings).toEqual([]);
  });

  it('unpinning a static attachment WARNs in dma_buf_unpin', () => {
    const { w, dmabuf } = setup('6.1');
    const a = run(dmaBufAttach(dmabuf, { name: 'nvme0' }));
    if (!a.ok) throw new Error(a.detail);
    run(dmaResvLock(dmabuf.resv, null));
    dmaBufUnpin(a.value);
    dmaResvUnlock(dmabuf.resv);
    expect(w.warnings.map((x) => [x.func, x.message, x.call])).toEqual([
      ['dma_buf_unpin', 'WARN_ON(!dma_buf_attachment_is_dynamic(attach))', 'dma_buf_unpin(attach=nvme0:bo0)'],
    ]);
  });

  it('an attachment outliving its buffer: WARN at release, KASAN use-after-free on later use', () => {
    const { w, dmabuf } = setup();
    const a = run(dmaBufDynamicAttach(dmabuf, { name: 'iommufd' }, importer));
    if (!a.ok) throw new Error(a.detail);
    dmaBufPut(dmabuf);
    run(dmaResvLock(dmabuf.resv, null));
    expect(run(dmaBufMapAttachment(a.value, 'to-device'))).toMatchObject({ ok: false, errno: 'EINVAL' });
    dmaResvUnlock(dmabuf.resv);
    run(dmaBufDetach(dmabuf, a.value));
    expect(w.warnings.map((x) => [x.func, x.message, x.call])).toEqual([
      ['dma_buf_release', 'WARN_ON(!list_empty(&dmabuf->attachments))', 'dma_buf_put(dmabuf=bo0)'],
      [
        'dma_buf_map_attachment',
        'BUG: KASAN: slab-use-after-free in dma_buf_map_attachment',
        'dma_buf_map_attachment(attach=iommufd:bo0, dir=DMA_TO_DEVICE)',
      ],
      [
        'dma_buf_detach',
        'BUG: KASAN: slab-use-after-free in dma_buf_detach',
        'dma_buf_detach(dmabuf=bo0, attach=iommufd:bo0)',
      ],
    ]);
  });

  it('invalidating without the resv lock names the notifying call; nested calls give a backtrace', () => {
    const { w, dmabuf } = setup();
    const seen: string[] = [];
    const ops: DmaBufAttachOps = {
      allow_peer2peer: true,
      invalidate_mappings: (a) => {
        // An importer that maps from inside its notification without checking the lock state.
        const m = run(dmaBufMapAttachment(a, 'from-device'));
        seen.push(String(m.ok));
      },
    };
    run(dmaBufDynamicAttach(dmabuf, { name: 'gpu1' }, ops));
    run(dmaBufInvalidateMappings(dmabuf));
    expect(seen).toEqual(['true']);
    expect(w.warnings.map((x) => x.backtrace)).toEqual([
      ['dma_buf_invalidate_mappings(dmabuf=bo0)'],
      [
        'dma_buf_map_attachment(attach=gpu1:bo0, dir=DMA_FROM_DEVICE)',
        'dma_buf_invalidate_mappings(dmabuf=bo0)',
      ],
    ]);
  });

  it('an exporter that makes a buffer inaccessible under a static importer: WARN_ON_ONCE(ret == -EBUSY)', () => {
    const w = createDmaBufWorld();
    const d = dmaBufExport(w, {
      expName: 'busy',
      sizeBytes: 4096,
      ops: {
        pin: () => err('EBUSY', 'buffer is being moved away'),
        unpin: () => {},
        map_dma_buf: () => ok(newSgTable()),
        unmap_dma_buf: () => {},
        release: () => {},
      },
      priv: {},
    });
    if (!d.ok) throw new Error(d.detail);
    const a = run(dmaBufAttach(d.value, { name: 'nvme0' }));
    if (!a.ok) throw new Error(a.detail);
    run(dmaResvLock(d.value.resv, null));
    const m1 = run(dmaBufMapAttachment(a.value, 'to-device'));
    const m2 = run(dmaBufMapAttachment(a.value, 'to-device'));
    dmaResvUnlock(d.value.resv);
    expect([m1, m2].map((m) => !m.ok && m.errno)).toEqual(['EBUSY', 'EBUSY']);
    expect(w.warnings.map((x) => [x.message, x.call])).toEqual([
      ['WARN_ON_ONCE(ret == -EBUSY)', 'dma_buf_map_attachment(attach=nvme0:busy, dir=DMA_TO_DEVICE)'],
    ]);
  });
});
