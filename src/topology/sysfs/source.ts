// SysfsSource: the one seam between the sysfs reader and where the files come from (a live `/`, a
// snapshot directory, an archive held in memory). It mirrors the few VFS operations that userspace
// tools such as lspci and hwloc use on /sys: read a file, list a directory, read a link, resolve a path.
//
// Paths are relative to the snapshot root, '/'-separated, with no leading '/': "sys/bus/pci/devices".
// Symlinks are followed the way the kernel's path walk does (component by component, `..` applied to
// the physical path, at most 40 links), but never out of the root: a link that climbs above the root,
// dangles, or loops is a TopologyError naming the link. An absolute link target is taken relative to
// the root, as a chroot (and hwloc's HWLOC_FSROOT) would.
//
// Implementations: dir-source.ts (a directory), memory-source.ts (an in-memory tree; archive-source.ts
// fills one from a .tar, .tar.gz or .tar.bz2).

import { TopologyError } from '../errors.js';

export interface SysfsSource {
  /** What this source reads, for messages: the directory or the archive file (and its top folder). */
  readonly label: string;
  /**
   * Bytes of a regular file, following symlinks.
   * @returns null when nothing is at `path` (or it is a directory).
   * @throws TopologyError when a link on the way dangles, loops or leaves the root, or the file cannot be read.
   */
  readFile(path: string): Uint8Array | null;
  /** The file as text (UTF-8), or null when absent; same errors as readFile. */
  readText(path: string): string | null;
  /**
   * Names in a directory, sorted, following symlinks.
   * @returns null when `path` is absent or not a directory.
   */
  listDir(path: string): string[] | null;
  /**
   * The raw target of the symlink at `path` (its directory is resolved, the link itself is not).
   * @returns null when `path` is absent or not a symlink.
   */
  readLink(path: string): string | null;
  /**
   * The physical path (no symlinks) of `path` inside the root.
   * @throws TopologyError when `path` does not exist or a link on the way dangles, loops or leaves the root.
   */
  realPath(path: string): string;
  /** Whether something is at `path`, following symlinks; false when nothing is there or a link is broken. */
  exists(path: string): boolean;
}

/** What a path walk finds at one name. */
export type NodeKind = 'file' | 'dir' | 'link';

/**
 * The primitives an implementation gives the shared path walk. `H` is its handle for one physical
 * path (a node of a tree, a host path); `child` looks a name up in a directory without following it.
 */
export interface WalkPrims<H> {
  readonly root: H;
  child(dir: H, name: string): H | null;
  kind(h: H): NodeKind;
  readLink(h: H): string;
}

export type WalkFailure = {
  readonly ok: false;
  readonly why: 'missing' | 'escape' | 'loop' | 'notdir';
  /** The physical path where the walk stopped. */
  readonly at: string;
  /** The symlink to blame: the one whose target led here, or null when the path itself is wrong. */
  readonly link: string | null;
};

export type WalkResult<H> =
  | { readonly ok: true; readonly path: string; readonly handle: H; readonly kind: NodeKind }
  | WalkFailure;

/** The kernel's limit on symlinks followed in one path walk (MAXSYMLINKS). */
export const MAXSYMLINKS = 40;

/** Split a relative or absolute path into components, dropping empty ones and ".". */
export function splitPath(p: string): string[] {
  const parts = p.split('/');
  // Most paths are already clean; filter only when needed (this runs for every file read).
  for (const c of parts) if (c === '' || c === '.') return parts.filter((x) => x !== '' && x !== '.');
  return parts;
}

/** Join components into a source path ("" is the root). */
export const joinPath = (...parts: string[]): string => splitPath(parts.join('/')).join('/');

/** The last component of a path (a symlink target's basename, as `basename(readlink(...))`). */
export const baseName = (p: string): string => splitPath(p).at(-1) ?? '';

/** The directory part of a source path ("" for a top-level name). */
export const dirName = (p: string): string => splitPath(p).slice(0, -1).join('/');

/**
 * Walk `path` from the root, following every symlink (the last one too when `followLast`).
 * Mirrors the kernel's link_path_walk(): `..` pops the physical path, a link's target is walked in
 * place of the link, and more than MAXSYMLINKS links is a loop (ELOOP).
 * @returns the physical path and handle, or why the walk stopped ('missing' ~ ENOENT, 'notdir' ~
 *   ENOTDIR, 'loop' ~ ELOOP, 'escape': `..` above the root) and the link to blame.
 */
export function walkPath<H>(prims: WalkPrims<H>, path: string, followLast = true): WalkResult<H> {
  // Components still to walk, last first; from[i] is the link whose target supplied todo[i].
  const todo = splitPath(path).reverse();
  const from: (string | null)[] = todo.map(() => null);
  const names: string[] = [];
  const handles: H[] = [prims.root];
  let links = 0;
  while (todo.length > 0) {
    const c = todo.pop()!;
    const link = from.pop()!;
    if (c === '..') {
      if (names.length === 0) return { ok: false, why: 'escape', at: path, link };
      names.pop();
      handles.pop();
      continue;
    }
    const dir = handles[handles.length - 1]!;
    if (prims.kind(dir) !== 'dir') return { ok: false, why: 'notdir', at: names.join('/'), link };
    const h = prims.child(dir, c);
    names.push(c);
    if (h === null) return { ok: false, why: 'missing', at: names.join('/'), link };
    if (prims.kind(h) === 'link' && (followLast || todo.length > 0)) {
      const phys = names.join('/');
      names.pop();
      if (++links > MAXSYMLINKS) return { ok: false, why: 'loop', at: phys, link: phys };
      const target = prims.readLink(h);
      if (target.startsWith('/')) {
        names.length = 0;
        handles.length = 1;
      }
      for (const t of splitPath(target).reverse()) {
        todo.push(t);
        from.push(phys);
      }
      continue;
    }
    handles.push(h);
  }
  const handle = handles[handles.length - 1]!;
  return { ok: true, path: names.join('/'), handle, kind: prims.kind(handle) };
}

/**
 * Turn a failed walk into the TopologyError the reader shows, naming the link when one is to blame.
 * @param label the source's label, for the message.
 * @returns the error (to throw), its `path` the link to blame or the path itself.
 */
export function walkError(label: string, path: string, r: WalkFailure): TopologyError {
  const where = r.link ?? r.at;
  switch (r.why) {
    case 'escape':
      if (r.link === null) {
        return new TopologyError(
          path,
          `${label}: ${path} climbs above the snapshot root; use paths inside it`,
        );
      }
      return new TopologyError(
        where,
        `${label}: the symlink ${where} points outside the snapshot; a snapshot's links must stay inside it (re-capture it, or remove the link)`,
      );
    case 'loop':
      return new TopologyError(
        where,
        `${label}: the symlink ${where} loops (more than ${MAXSYMLINKS} links followed while resolving ${path}); fix or remove the link`,
      );
    case 'notdir':
      return new TopologyError(r.at, `${label}: ${r.at} is a file, but ${path} uses it as a directory`);
    case 'missing':
      return r.link === null
        ? new TopologyError(path, `${label}: ${path} does not exist`)
        : new TopologyError(
            r.link,
            `${label}: the symlink ${r.link} dangles (${r.at} is not in the snapshot); the snapshot is incomplete: re-capture it`,
          );
  }
}

const utf8 = new TextDecoder('utf-8');

/** Decode a sysfs text file (they are ASCII; invalid bytes become U+FFFD rather than failing). */
export const decodeText = (b: Uint8Array): string => utf8.decode(b);

/** A walk that failed only because the path names nothing (no link to blame): plain absence. */
const isAbsent = (r: WalkFailure): boolean => (r.why === 'missing' || r.why === 'notdir') && r.link === null;

/**
 * The fast path of a walk, for the common case of a path with no symlink and no `..` in it (the
 * reader reads attributes of already-resolved device directories). Returns undefined when the path
 * needs the full walk, null when it plainly names nothing.
 */
function walkPhysical<H>(
  io: WalkPrims<H>,
  path: string,
  followLast = true,
): { path: string; handle: H; kind: NodeKind } | null | undefined {
  let h = io.root;
  const parts = splitPath(path);
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i]!;
    if (c === '..') return undefined;
    if (io.kind(h) !== 'dir') return null;
    const n = io.child(h, c);
    if (n === null) return null;
    if (io.kind(n) === 'link' && (followLast || i < parts.length - 1)) return undefined;
    h = n;
  }
  return { path: parts.join('/'), handle: h, kind: io.kind(h) };
}

/** What an implementation adds to the walk primitives: reading a file and listing a directory. */
export interface SourceIo<H> extends WalkPrims<H> {
  /** Bytes of the regular file `h`; `phys` is its physical path, for messages. */
  read(h: H, phys: string): Uint8Array;
  /** Names in the directory `h`. */
  list(h: H): string[];
}

/**
 * Build a SysfsSource from an implementation's primitives; every implementation shares this, so they
 * agree on what a dangling, looping or escaping link means.
 * @returns the source; its methods throw TopologyError as the interface documents.
 */
export function makeSource<H>(label: string, io: SourceIo<H>): SysfsSource {
  const resolve = (path: string): { path: string; handle: H; kind: NodeKind } | null => {
    const fast = walkPhysical(io, path);
    if (fast !== undefined) return fast;
    const r = walkPath(io, path);
    if (r.ok) return r;
    if (isAbsent(r)) return null;
    throw walkError(label, path, r);
  };
  const readFile = (path: string): Uint8Array | null => {
    const r = resolve(path);
    return r && r.kind === 'file' ? io.read(r.handle, r.path) : null;
  };
  return {
    label,
    readFile,
    readText: (path) => {
      const b = readFile(path);
      return b === null ? null : decodeText(b);
    },
    listDir: (path) => {
      const r = resolve(path);
      return r && r.kind === 'dir' ? io.list(r.handle).sort() : null;
    },
    readLink: (path) => {
      const fast = walkPhysical(io, path, false);
      if (fast !== undefined) return fast?.kind === 'link' ? io.readLink(fast.handle) : null;
      const r = walkPath(io, path, false);
      if (!r.ok) {
        if (isAbsent(r)) return null;
        throw walkError(label, path, r);
      }
      return r.kind === 'link' ? io.readLink(r.handle) : null;
    },
    realPath: (path) => {
      const r = resolve(path);
      if (r === null) throw new TopologyError(path, `${label}: ${path} does not exist`);
      return r.path;
    },
    exists: (path) => {
      const r = walkPath(io, path);
      return r.ok;
    },
  };
}
