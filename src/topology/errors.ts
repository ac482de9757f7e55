// The one error class every topology reader throws for bad input (a snapshot, an archive, a machine
// file). It is not a kernel errno: the kernel never sees these inputs. The CLI turns it into a message
// naming `path` and an exit code, never a stack trace.

/**
 * Bad input given to a topology reader.
 *
 * `path` names what is wrong: a file on disk, or a path inside a snapshot ("sys/devices/.../config"),
 * so the user can look at it. The message is a sentence saying what is wrong and what to do.
 */
export class TopologyError extends Error {
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TopologyError';
    this.path = path;
  }
}

/** True when `e` is a TopologyError (also across module copies, by name). */
export const isTopologyError = (e: unknown): e is TopologyError =>
  e instanceof TopologyError || (e instanceof Error && e.name === 'TopologyError' && 'path' in e);
