// A SysfsSource over an archive (.tar, .tar.gz/.tgz, .tar.bz2), unpacked into memory only. The format
// is told by its magic bytes, not its name. The layout (sys/, proc/) may be at the archive's root or
// under exactly one top folder, whatever that folder is called (hwloc's tarballs name it differently
// from the file). Links are resolved inside the chosen root only (see source.ts).

import { gunzipSync } from 'node:zlib';
import bunzip from 'seek-bzip';
import { TopologyError } from '../errors.js';
import {
  createMemorySource,
  getNode,
  type MemDir,
  type MemNode,
  memDir,
  treeWriter,
} from './memory-source.js';
import type { SysfsSource } from './source.js';
import { isTarHeader, parseTar } from './tar-parse.js';

export type ArchiveFormat = 'tar' | 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'unknown';

const startsWith = (b: Uint8Array, magic: readonly number[]): boolean => magic.every((m, i) => b[i] === m);

/**
 * Tell an archive's format from its first bytes (gzip 1f 8b, bzip2 "BZh", xz, zstd, or a tar header
 * with a valid checksum).
 * @returns the format; 'unknown' when none matches.
 */
export function detectFormat(b: Uint8Array): ArchiveFormat {
  if (startsWith(b, [0x1f, 0x8b])) return 'gzip';
  if (startsWith(b, [0x42, 0x5a, 0x68])) return 'bzip2'; // "BZh"
  if (startsWith(b, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (startsWith(b, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (isTarHeader(b, 0)) return 'tar';
  return 'unknown';
}

/**
 * Output chunk size for gunzip: the uncompressed size the gzip trailer records (ISIZE, RFC 1952),
 * so a snapshot of tens of MB inflates into one buffer instead of thousands of 16 KiB chunks that
 * are then copied together. ISIZE is only a hint (modulo 2^32, last member only), so it is bounded:
 * a damaged trailer costs at most one oversized buffer, never a wrong result.
 */
function gunzipChunkSize(b: Uint8Array): number {
  const n = b.length;
  const isize = n >= 18 ? (b[n - 4]! | (b[n - 3]! << 8) | (b[n - 2]! << 16) | (b[n - 1]! << 24)) >>> 0 : 0;
  // Deflate cannot expand more than about 1032:1, so a larger ISIZE is a lie; never trust it past 256 MiB.
  return Math.max(1 << 16, Math.min(isize + 1, n * 1032, 1 << 28));
}

/** Undo the compression, leaving tar bytes. */
function decompress(b: Uint8Array, label: string): Uint8Array {
  const fmt = detectFormat(b);
  const damaged = (what: string, e: unknown): TopologyError =>
    new TopologyError(
      label,
      `${label}: the ${what} data is damaged (${e instanceof Error ? e.message : String(e)}); copy the file again`,
      { cause: e },
    );
  switch (fmt) {
    case 'tar':
      return b;
    case 'gzip':
      try {
        return gunzipSync(b, { chunkSize: gunzipChunkSize(b) });
      } catch (e) {
        throw damaged('gzip', e);
      }
    case 'bzip2':
      try {
        return bunzip.decode(b, undefined, true);
      } catch (e) {
        throw damaged('bzip2', e);
      }
    case 'xz':
    case 'zstd':
      throw new TopologyError(
        label,
        `${label}: ${fmt}-compressed archives are not supported; recompress it as .tar.gz or .tar.bz2`,
      );
    case 'unknown':
      throw new TopologyError(
        label,
        `${label}: unknown file format (not a tar, .tar.gz or .tar.bz2 archive, nor a directory); give a sysfs snapshot made by 'dmasim capture' or hwloc-gather-topology`,
      );
  }
}

/** Unpack tar entries into a tree; a hard link shares its (earlier) target's bytes. */
function buildTree(tar: Uint8Array, label: string): MemDir {
  const root = memDir();
  const put = treeWriter(root, label);
  for (const e of parseTar(tar, label)) {
    let node: MemNode;
    if (e.type === 'file') node = { kind: 'file', data: e.data };
    else if (e.type === 'dir') node = memDir();
    else if (e.type === 'symlink') node = { kind: 'link', target: e.target };
    else {
      const t = getNode(root, e.target);
      if (t?.kind !== 'file') {
        throw new TopologyError(
          e.path,
          `${label}: the hard link ${e.path} points to ${e.target}, which is not an earlier file in the archive`,
        );
      }
      node = t;
    }
    put(e.path, node);
  }
  return root;
}

/** The layout root: the archive root if it holds sys/ or proc/, else its only top folder. */
function layoutRoot(root: MemDir): { dir: MemDir; top: string | null } {
  if (root.entries.has('sys') || root.entries.has('proc')) return { dir: root, top: null };
  const tops = [...root.entries.entries()];
  const only = tops[0];
  if (tops.length === 1 && only !== undefined && only[1].kind === 'dir')
    return { dir: only[1], top: only[0] };
  return { dir: root, top: null };
}

export interface OpenedArchive {
  readonly source: SysfsSource;
  readonly format: ArchiveFormat;
  /** The top folder the layout was found under, or null when it is at the archive root. */
  readonly top: string | null;
}

/**
 * Open an archive held in memory as a SysfsSource.
 * @param label names the archive (its path) in messages.
 * @returns the source (rooted at the layout), the format found, and the top folder if there was one.
 * @throws TopologyError for an unknown or unsupported format, damaged data, or an unsafe entry.
 */
export function openArchive(bytes: Uint8Array, label: string): OpenedArchive {
  const format = detectFormat(bytes);
  const tar = decompress(bytes, label);
  if (format !== 'tar' && tar.length > 0 && !isTarHeader(tar, 0)) {
    throw new TopologyError(
      label,
      `${label}: ${format} data that is not a tar archive inside; give a .tar.gz or .tar.bz2`,
    );
  }
  const tree = buildTree(tar, label);
  const { dir, top } = layoutRoot(tree);
  const source = createMemorySource(top === null ? label : `${label} (folder ${top}/)`, dir);
  return { source, format, top };
}
