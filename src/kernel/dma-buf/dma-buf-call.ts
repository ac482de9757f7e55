// How dma-buf entry points name themselves in warnings: the kernel's WARN backtrace shows the call
// chain; the model records the offending call with its arguments ("dma_buf_unpin(attach=mlx5_0:bo0)").
// Mirrors no kernel file; the names follow include/linux/dma-buf.h and include/linux/dma-direction.h.

import { hex } from '../../hw/addr.js';
import type { DmaDirection } from '../dma/dma-types.js';

/** `enum dma_data_direction` names as the kernel spells them. */
export const DMA_DIR_NAME: Readonly<Record<DmaDirection, string>> = {
  bidirectional: 'DMA_BIDIRECTIONAL',
  'to-device': 'DMA_TO_DEVICE',
  'from-device': 'DMA_FROM_DEVICE',
  none: 'DMA_NONE',
};

/** An attachment as a call argument: importer device, then the dma-buf's exporter name. */
export const attachArg = (a: {
  readonly dev: { readonly name: string };
  readonly dmabuf: { readonly expName: string };
}): string => `${a.dev.name}:${a.dmabuf.expName}`;

/** One argument value: bigints print as hex (addresses and sizes), everything else as itself. */
function argText(v: string | number | bigint | boolean | null): string {
  if (typeof v === 'bigint') return hex(v);
  return String(v);
}

/** `name(k1=v1, k2=v2)`: the text of one recorded call. */
export function callText(
  name: string,
  args: Readonly<Record<string, string | number | bigint | boolean | null>>,
): string {
  const parts = Object.entries(args).map(([k, v]) => `${k}=${argText(v)}`);
  return `${name}(${parts.join(', ')})`;
}
