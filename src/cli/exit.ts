// The one place outcomes become exit codes and messages. Bad input never shows a stack trace.

import { isTopologyError } from '../topology/errors.js';

export const EXIT_OK = 0;
/** The input (a file, a snapshot, an argument) is wrong: the message says what and where. */
export const EXIT_BAD_INPUT = 2;
/** dmasim itself failed: a bug. */
export const EXIT_INTERNAL = 3;

/** An error in what the user asked for (arguments, names), as opposed to a bug. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Outcome {
  readonly code: number;
  readonly message: string;
}

/** Classify an error thrown by a command. */
export function outcomeOf(e: unknown): Outcome {
  if (isTopologyError(e)) return { code: EXIT_BAD_INPUT, message: `dmasim: ${e.path}: ${e.message}` };
  if (e instanceof UsageError) return { code: EXIT_BAD_INPUT, message: `dmasim: ${e.message}` };
  if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'ENOENT') {
    const p = (e as NodeJS.ErrnoException).path ?? '';
    return { code: EXIT_BAD_INPUT, message: `dmasim: ${p}: no such file or directory` };
  }
  if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'EACCES') {
    const p = (e as NodeJS.ErrnoException).path ?? '';
    return { code: EXIT_BAD_INPUT, message: `dmasim: ${p}: permission denied` };
  }
  const detail =
    e instanceof Error ? (process.env.DMASIM_DEBUG ? (e.stack ?? e.message) : e.message) : String(e);
  return {
    code: EXIT_INTERNAL,
    message: `dmasim: internal error: ${detail}\n(this is a bug in dmasim; run with DMASIM_DEBUG=1 for the stack and report it)`,
  };
}
