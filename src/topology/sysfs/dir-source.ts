// A SysfsSource over a directory: the live system (`/`) or an unpacked snapshot. Read-only. Symlinks
// are walked by the shared path walk (source.ts), not by the host's realpath, so a snapshot's links
// stay inside its directory even when they are absolute. Mirrors what lspci's sysfs access method
// (`-A linux-sysfs`, `-S` root override) and hwloc's HWLOC_FSROOT do.

import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { TopologyError } from '../errors.js';
import { makeSource, type NodeKind, type SysfsSource } from './source.js';

interface HostNode {
  /** Absolute host path. */
  readonly p: string;
  readonly k: NodeKind;
}

const errCode = (e: unknown): string =>
  e instanceof Error && 'code' in e ? String((e as { code: unknown }).code) : String(e);

const kindOf = (p: string): NodeKind | null => {
  const st = lstatSync(p, { throwIfNoEntry: false });
  if (st === undefined) return null;
  return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
};

/**
 * A SysfsSource reading the directory `root` (e.g. "/" for the running system).
 * @returns a read-only source; reads that fail (EACCES, EIO) throw a TopologyError naming the file.
 * @throws TopologyError when `root` is not a readable directory.
 */
export function createDirSource(root: string, label = root): SysfsSource {
  const abs = resolve(root);
  const st = statSync(abs, { throwIfNoEntry: false });
  if (st === undefined || !st.isDirectory()) {
    throw new TopologyError(
      root,
      `${root} is not a directory; give the root of a sysfs snapshot (or / for this machine)`,
    );
  }
  // sysfs does not change while one machine is read; caching lookups keeps deep device paths cheap.
  const cache = new Map<string, HostNode | null>();
  const fail = (phys: string, what: string, e: unknown): TopologyError =>
    new TopologyError(
      phys,
      `${label}: cannot ${what} ${phys} (${errCode(e)}); check its permissions or run as root`,
      { cause: e },
    );
  return makeSource<HostNode>(label, {
    root: { p: abs, k: 'dir' },
    child: (dir, name) => {
      const p = dir.p === '/' ? `/${name}` : `${dir.p}/${name}`;
      let n = cache.get(p);
      if (n === undefined) {
        const k = kindOf(p);
        n = k === null ? null : { p, k };
        cache.set(p, n);
      }
      return n;
    },
    kind: (h) => h.k,
    readLink: (h) => readlinkOrEmpty(h.p),
    read: (h, phys) => {
      try {
        return readFileSync(h.p);
      } catch (e) {
        throw fail(phys, 'read', e);
      }
    },
    list: (h) => {
      try {
        return readdirSync(h.p);
      } catch (e) {
        throw fail(h.p === abs ? '.' : h.p.slice(abs.length + 1), 'list', e);
      }
    },
  });
}

function readlinkOrEmpty(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return '';
  }
}
