// Pinning a dma-buf for a dynamic importer (drivers/dma-buf/dma-buf.c dma_buf_pin/dma_buf_unpin): the
// exporter keeps the buffer where it is until unpinned. Only dynamic attachments may pin (WARN
// otherwise), always under the resv lock (lockdep-asserted). Re-exported by dma-buf.ts.

import { err, type KResult, ok } from '../errno.js';
import { type DmaBufAttachment, dmaBufAttachmentIsDynamic, dmaBufUseAfterFree, maybeOp } from './dma-buf.js';
import { attachArg, callText } from './dma-buf-call.js';
import { dmaResvAssertHeld } from './dma-resv.js';
import type { KTaskOp } from './sched.js';
import { warnOn, withCall, withCallOp } from './world.js';

/**
 * dma_buf_pin(): keep a dynamic importer's buffer in place. Resv lock held; WARN for static attachments.
 * @returns ok, or the exporter's pin error. May sleep (the exporter may move the buffer first).
 */
export function dmaBufPin(attach: DmaBufAttachment): KTaskOp<KResult<undefined>> {
  const dmabuf = attach.dmabuf;
  return withCallOp(dmabuf.world, callText('dma_buf_pin', { attach: attachArg(attach) }), pin(attach));
}

function* pin(attach: DmaBufAttachment): KTaskOp<KResult<undefined>> {
  const dmabuf = attach.dmabuf;
  if (dmaBufUseAfterFree(dmabuf, 'dma_buf_pin')) return err('EINVAL', 'dma-buf already released');
  warnOn(
    dmabuf.world,
    !dmaBufAttachmentIsDynamic(attach),
    'dma_buf_pin',
    dmabuf.world.facts.dmabufPinWarnCond,
  );
  dmaResvAssertHeld(dmabuf.resv, 'dma_buf_pin');
  return dmabuf.ops.pin ? yield* maybeOp(dmabuf.ops.pin(attach)) : ok(undefined);
}

/** dma_buf_unpin(). Resv lock held; WARN for static attachments. */
export function dmaBufUnpin(attach: DmaBufAttachment): void {
  const dmabuf = attach.dmabuf;
  withCall(dmabuf.world, callText('dma_buf_unpin', { attach: attachArg(attach) }), () => {
    if (dmaBufUseAfterFree(dmabuf, 'dma_buf_unpin')) return;
    warnOn(
      dmabuf.world,
      !dmaBufAttachmentIsDynamic(attach),
      'dma_buf_unpin',
      dmabuf.world.facts.dmabufPinWarnCond,
    );
    dmaResvAssertHeld(dmabuf.resv, 'dma_buf_unpin');
    dmabuf.ops.unpin?.(attach);
  });
}
