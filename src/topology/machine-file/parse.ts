// Read a machine file: YAML (keeping where each node sits) validated by the zod schema. Every problem
// becomes one line "file:line:col: key.path: what is wrong", so people can go straight to it.

import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { TopologyError } from '../errors.js';
import { MachineFile, type MachineFileDoc } from './schema.js';

export type DocPath = readonly (string | number)[];

/** One problem in a machine file. */
export interface MachineFileIssue {
  readonly file: string;
  /** 1-based; 0 when the problem has no position (a generated machine). */
  readonly line: number;
  readonly col: number;
  /** "hostBridges[0].devices[2].acs.ctrl", or "" for the whole file. */
  readonly path: string;
  readonly message: string;
}

export const formatIssue = (i: MachineFileIssue): string =>
  `${i.file}${i.line > 0 ? `:${i.line}:${i.col}` : ''}: ${i.path ? `${i.path}: ` : ''}${i.message}`;

/**
 * A machine file that cannot be turned into a machine. `path` is "file:line:col" of the first problem
 * and the message lists every problem, one per line, so the CLI's "dmasim: <path>: <message>" reads
 * as a compiler error list.
 */
export class MachineFileError extends TopologyError {
  readonly issues: readonly MachineFileIssue[];

  constructor(issues: readonly MachineFileIssue[]) {
    const [first, ...rest] = issues;
    if (!first) throw new Error('MachineFileError without issues');
    const where = `${first.file}${first.line > 0 ? `:${first.line}:${first.col}` : ''}`;
    const head = `${first.path ? `${first.path}: ` : ''}${first.message}`;
    super(where, [head, ...rest.map(formatIssue)].join('\n'));
    this.issues = issues;
  }
}

export const pathString = (p: DocPath): string =>
  p.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');

/** Finds the line and column of a node (or of a key inside a map); null when not in the text. */
export type Locate = (path: DocPath, key?: string) => { line: number; col: number } | null;

const show = (v: unknown): string =>
  typeof v === 'string' ? `"${v}"` : v === null ? 'null' : (JSON.stringify(v) ?? String(v));

function valueAt(root: unknown, path: DocPath): unknown {
  let v = root;
  for (const s of path)
    v = v !== null && typeof v === 'object' ? (v as Record<string | number, unknown>)[s] : undefined;
  return v;
}

/** Turn one zod issue into machine-file issues (an unknown-keys issue names each key). */
export function explain(
  issue: z.core.$ZodIssue,
  root: unknown,
  base: DocPath = [],
): { path: DocPath; key?: string; message: string }[] {
  const path = [...base, ...(issue.path as DocPath)];
  const value = valueAt(root, path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((k) => ({ path, key: k, message: `unknown key "${k}"` }));
    case 'invalid_type':
      if (value === undefined) {
        const last = path[path.length - 1];
        return [{ path: path.slice(0, -1), message: `missing required key "${String(last)}"` }];
      }
      return [{ path, message: `expected ${issue.expected}, got ${show(value)}` }];
    case 'invalid_union': {
      if (issue.discriminator !== undefined) {
        const opts = ((issue as { options?: unknown[] }).options ?? []).join(', ');
        const msg =
          value === undefined
            ? `missing "kind" (one of ${opts})`
            : `unknown kind ${show(value)} (expected ${opts})`;
        return [{ path: value === undefined ? path.slice(0, -1) : path, message: msg }];
      }
      // A value-or-object union (acs): explain the object branch for objects, else the value branch.
      const branch =
        issue.errors[value !== null && typeof value === 'object' ? issue.errors.length - 1 : 0] ?? [];
      const out = branch.flatMap((i) => explain(i, root, path));
      return out.length > 0 ? out : [{ path, message: `${show(value)} is not valid here` }];
    }
    default:
      return [{ path, message: issue.message }];
  }
}

/** A positioned YAML document, ready for validation and for locating later (semantic) errors. */
export interface ParsedYaml {
  readonly value: unknown;
  readonly locate: Locate;
}

/**
 * Parse YAML text, keeping positions.
 * @throws MachineFileError listing every YAML syntax error with its line and column.
 */
export function parseYaml(text: string, file: string): ParsedYaml {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new MachineFileError(
      doc.errors.map((e) => {
        const p = lc.linePos(e.pos[0]);
        return {
          file,
          line: p.line,
          col: p.col,
          path: '',
          message: `YAML syntax error: ${e.message.split('\n')[0]}`,
        };
      }),
    );
  }
  const locate: Locate = (path, key) => {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
      if (node === undefined || node === null) continue;
      if (n === path.length && key !== undefined && isMap(node)) {
        const pair = node.items.find((it) => isScalar(it.key) && it.key.value === key);
        const kr = pair && isScalar(pair.key) ? pair.key.range : undefined;
        if (kr) return lc.linePos(kr[0]);
      }
      const r = (node as { range?: [number, number, number] }).range;
      if (r) return lc.linePos(r[0]);
    }
    return text.length > 0 ? { line: 1, col: 1 } : null;
  };
  return { value: doc.toJS(), locate };
}

/** Make positioned issues from (path, message) pairs. */
export function issuesAt(
  file: string,
  locate: Locate | null,
  found: readonly { path: DocPath; key?: string | undefined; message: string }[],
): MachineFileIssue[] {
  return found.map((f) => {
    const pos = locate?.(f.path, f.key) ?? null;
    const path = f.key !== undefined ? pathString([...f.path, f.key]) : pathString(f.path);
    return { file, line: pos?.line ?? 0, col: pos?.col ?? 0, path, message: f.message };
  });
}

/** In file order, so the first one reported is the first one in the text. */
export const sortIssues = (issues: MachineFileIssue[]): MachineFileIssue[] =>
  issues.sort((a, b) => a.line - b.line || a.col - b.col);

/**
 * Parse and validate machine-file text.
 * @throws MachineFileError with every syntax or schema problem, each with file:line:col.
 */
export function parseMachineDoc(text: string, file: string): { doc: MachineFileDoc; locate: Locate } {
  const y = parseYaml(text, file);
  const r = MachineFile.safeParse(y.value ?? {});
  if (!r.success) {
    const found = r.error.issues.flatMap((i) => explain(i, y.value));
    throw new MachineFileError(sortIssues(issuesAt(file, y.locate, found)));
  }
  return { doc: r.data, locate: y.locate };
}
