// move_notify / invalidate_mappings with importers whose notification sleeps (an RDMA NIC zapping its
// translation and waiting for the hardware): the exporter's call returns only after each importer is
// done, in attachment order, under the resv lock.

import { describe, expect, it } from 'vitest';
import { sleep } from '../../sim/task.js';
import { ok } from '../errno.js';
import { newSgTable } from '../lib/scatterlist.js';
import { type DmaBufAttachOps, dmaBufDynamicAttach, dmaBufExport } from './dma-buf.js';
import { dmaBufInvalidateMappings } from './dma-buf-map.js';
import { dmaResvHeld, dmaResvLock, dmaResvUnlock } from './dma-resv.js';
import { kthreadRun } from './sched.js';
import { createDmaBufWorld, type DmaBufProfile } from './world.js';

describe.each(['6.1', 'newest'] as DmaBufProfile[])('invalidation that sleeps (%s)', (profile) => {
  it('waits for each importer, newest attachment first, with the lock held throughout', () => {
    const w = createDmaBufWorld({ profile });
    const d = dmaBufExport(w, {
      expName: 'bo',
      sizeBytes: 4096,
      ops: { map_dma_buf: () => ok(newSgTable()), unmap_dma_buf: () => {}, release: () => {} },
      priv: {},
    });
    if (!d.ok) throw new Error(d.detail);
    const dmabuf = d.value;
    const log: string[] = [];
    const sleepy = (name: string, ns: number): DmaBufAttachOps => {
      const op = () =>
        (function* () {
          log.push(`${name} zap at ${w.engine.nowNs} held=${dmaResvHeld(dmabuf.resv)}`);
          yield sleep(ns);
          log.push(`${name} drained at ${w.engine.nowNs}`);
        })();
      return { allow_peer2peer: true, move_notify: op, invalidate_mappings: op };
    };
    kthreadRun(
      w,
      'exporter',
      (function* () {
        yield* dmaBufDynamicAttach(dmabuf, { name: 'nic0' }, sleepy('nic0', 300));
        yield* dmaBufDynamicAttach(dmabuf, { name: 'nic1' }, sleepy('nic1', 200));
        yield* dmaResvLock(dmabuf.resv, null);
        yield* dmaBufInvalidateMappings(dmabuf);
        log.push(`returned at ${w.engine.nowNs}`);
        dmaResvUnlock(dmabuf.resv);
      })(),
    );
    w.engine.run();
    expect(log).toEqual([
      'nic1 zap at 0 held=true',
      'nic1 drained at 200',
      'nic0 zap at 200 held=true',
      'nic0 drained at 500',
      'returned at 500',
    ]);
    expect(w.warnings).toEqual([]);
  });
});
