// An in-memory SysfsSource: a tree of files, directories and symlinks held in Maps. Archives are
// unpacked into one (archive-source.ts) so that nothing from them is ever written to disk, and tests
// build small snapshots with `memorySourceFromEntries`. Mirrors nothing in the kernel: it is the
// ramfs of this tool.

import { TopologyError } from '../errors.js';
import { makeSource, type NodeKind, type SysfsSource, splitPath } from './source.js';

export type MemNode = MemFile | MemDir | MemLink;
export interface MemFile {
  readonly kind: 'file';
  readonly data: Uint8Array;
}
export interface MemDir {
  readonly kind: 'dir';
  readonly entries: Map<string, MemNode>;
}
export interface MemLink {
  readonly kind: 'link';
  readonly target: string;
}

export const memDir = (): MemDir => ({ kind: 'dir', entries: new Map() });

/**
 * Put `node` at `path` under `root`, creating missing parent directories. A directory put where one
 * already is keeps the existing entries (tar lists a directory before or after its contents).
 * @throws TopologyError when a parent is a file or a link, naming `label` and the path.
 */
export function putNode(root: MemDir, path: string, node: MemNode, label: string): void {
  const parts = splitPath(path);
  const last = parts.pop();
  if (last === undefined) return;
  let dir = root;
  for (const [i, c] of parts.entries()) {
    const next = dir.entries.get(c);
    if (next === undefined) {
      const d = memDir();
      dir.entries.set(c, d);
      dir = d;
    } else if (next.kind === 'dir') {
      dir = next;
    } else {
      const at = parts.slice(0, i + 1).join('/');
      throw new TopologyError(
        at,
        `${label}: ${at} is a ${next.kind}, but the entry ${path} uses it as a directory`,
      );
    }
  }
  const old = dir.entries.get(last);
  if (node.kind === 'dir' && old?.kind === 'dir') return;
  dir.entries.set(last, node);
}

/**
 * A `putNode` for many paths in a row that remembers the last parent directory: tar lists a
 * directory's files together, so most entries skip the walk from the root.
 */
export function treeWriter(root: MemDir, label: string): (path: string, node: MemNode) => void {
  let lastParent = '';
  let lastDir: MemDir = root;
  return (path, node) => {
    const slash = path.lastIndexOf('/');
    const parent = slash < 0 ? '' : path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (parent !== lastParent || name === '' || name === '.' || name === '..') {
      putNode(root, path, node, label);
      const p = getNode(root, parent);
      if (p?.kind === 'dir') {
        lastParent = parent;
        lastDir = p;
      }
      return;
    }
    const old = lastDir.entries.get(name);
    if (node.kind === 'dir' && old?.kind === 'dir') return;
    lastDir.entries.set(name, node);
  };
}

/**
 * Look a physical path (no symlinks in it) up in the tree.
 * @returns the node, or null when nothing is there.
 */
export function getNode(root: MemDir, path: string): MemNode | null {
  let n: MemNode = root;
  for (const c of splitPath(path)) {
    if (n.kind !== 'dir') return null;
    const next = n.entries.get(c);
    if (next === undefined) return null;
    n = next;
  }
  return n;
}

/**
 * A SysfsSource over an in-memory tree.
 * @param label names the source in messages (an archive path, "memory").
 * @returns a source that never touches the filesystem.
 */
export function createMemorySource(label: string, root: MemDir): SysfsSource {
  return makeSource<MemNode>(label, {
    root,
    child: (dir, name) => (dir.kind === 'dir' ? (dir.entries.get(name) ?? null) : null),
    kind: (h): NodeKind => h.kind,
    readLink: (h) => (h.kind === 'link' ? h.target : ''),
    read: (h) => (h.kind === 'file' ? h.data : new Uint8Array()),
    list: (h) => (h.kind === 'dir' ? [...h.entries.keys()] : []),
  });
}

/** One entry for `memorySourceFromEntries`: text or bytes for a file, `{ link }`, or `{ dir: true }`. */
export type MemEntry = string | Uint8Array | { readonly link: string } | { readonly dir: true };

/**
 * A SysfsSource from a flat map of paths, for tests and hand-made snapshots.
 * @returns the source.
 * @throws TopologyError when two entries conflict (a file used as a directory).
 */
export function memorySourceFromEntries(
  label: string,
  entries: Readonly<Record<string, MemEntry>>,
): SysfsSource {
  const root = memDir();
  const enc = new TextEncoder();
  for (const [path, e] of Object.entries(entries)) {
    const node: MemNode =
      typeof e === 'string'
        ? { kind: 'file', data: enc.encode(e) }
        : e instanceof Uint8Array
          ? { kind: 'file', data: e }
          : 'link' in e
            ? { kind: 'link', target: e.link }
            : memDir();
    putNode(root, path, node, label);
  }
  return createMemorySource(label, root);
}
