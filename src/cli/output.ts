// Writing large outputs to stdout with back-pressure.

import { once } from 'node:events';

/** Write chunks in order, waiting for the stream to drain when its buffer is full. */
export async function writeChunks(
  chunks: Iterable<string>,
  out: NodeJS.WritableStream = process.stdout,
): Promise<void> {
  for (const c of chunks) {
    if (!out.write(c)) await once(out, 'drain');
  }
}
