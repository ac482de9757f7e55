// Read a tar stream held in memory into a flat list of entries: POSIX ustar headers, GNU long names
// ('L', 'K'), pax extended headers ('x' per entry, 'g' global) and base-256 sizes. Nothing is written
// anywhere. Entry paths are checked here: an absolute path or one with a `..` component is refused,
// naming the entry, so no later step can be tricked into leaving the archive.
//
// Format reference: POSIX.1-2001 pax/ustar (IEEE 1003.1 "pax"), GNU tar's tar.h.

import { TopologyError } from '../errors.js';

export type TarEntry =
  | { readonly type: 'file'; readonly path: string; readonly data: Uint8Array }
  | { readonly type: 'dir'; readonly path: string }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string }
  | { readonly type: 'hardlink'; readonly path: string; readonly target: string };

const BLOCK = 512;

/** A NUL-terminated field as text (UTF-8; tar names are ASCII in practice). */
function str(b: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return b.toString('utf8', off, end);
}

/** An octal (or GNU base-256) numeric field; null when it is not a number. */
function num(b: Uint8Array, off: number, len: number): number | null {
  if ((b[off]! & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement in the remaining bits.
    let v = b[off]! & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + b[off + i]!;
    return v;
  }
  let v = 0;
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) return null;
    v = v * 8 + (c - 0x30);
  }
  return v;
}

/** Whether the 512 bytes at `off` are a tar header with a valid checksum (POSIX: sum with chksum = spaces). */
export function isTarHeader(b: Uint8Array, off = 0): boolean {
  if (b.length < off + BLOCK) return false;
  const want = num(b, off + 148, 8);
  if (want === null) return false;
  let sum = 8 * 0x20;
  for (let i = off; i < off + 148; i++) sum += b[i]!;
  for (let i = off + 156; i < off + BLOCK; i++) sum += b[i]!;
  return sum === want && sum !== 8 * 0x20;
}

const isZeroBlock = (b: Uint8Array, off: number): boolean => {
  for (let i = off; i < off + BLOCK; i++) if (b[i] !== 0) return false;
  return true;
};

/** Parse pax records "LEN key=value\n" into a map. */
function paxRecords(data: Buffer, label: string, at: number): Map<string, string> {
  const out = new Map<string, string>();
  const text = data.toString('utf8');
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    const len = Number.parseInt(text.slice(i, sp), 10);
    if (sp < 0 || !(len > 0)) {
      if (text.slice(i).trim() === '') break;
      throw new TopologyError(label, `${label}: malformed pax header at byte ${at}; the archive is damaged`);
    }
    const rec = text.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/**
 * Check an entry path and normalise it ("./a/b/" -> "a/b").
 * @returns the normalised path ("" for the archive root itself).
 * @throws TopologyError naming the entry when it is absolute or climbs with `..`.
 */
export function checkEntryPath(path: string, label: string): string {
  // The common case, a clean relative path, needs no splitting.
  if (!/^\/|(^|\/)\.{1,2}(\/|$)|\/\//.test(path)) return path.endsWith('/') ? path.slice(0, -1) : path;
  if (path.startsWith('/')) {
    throw new TopologyError(
      path,
      `${label}: the archive entry ${path} has an absolute path; refusing to read an archive that could write outside its folder`,
    );
  }
  const parts = path.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) {
    throw new TopologyError(
      path,
      `${label}: the archive entry ${path} contains '..'; refusing to read an archive that could write outside its folder`,
    );
  }
  return parts.join('/');
}

/**
 * Parse a whole tar archive.
 * @param label names the archive in messages.
 * @returns the entries in archive order (files, directories, symlinks, hard links), data as views.
 * @throws TopologyError for a damaged header, a truncated archive, or an unsafe entry path.
 */
export function parseTar(bytes: Uint8Array, label: string): TarEntry[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: TarEntry[] = [];
  let pax: Map<string, string> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;
  let off = 0;
  while (off + BLOCK <= b.length) {
    if (isZeroBlock(b, off)) break;
    if (!isTarHeader(b, off)) {
      throw new TopologyError(
        label,
        `${label}: damaged tar header at byte ${off} (bad checksum); the archive is corrupt or truncated`,
      );
    }
    const h = off;
    const size = num(b, h + 124, 12) ?? 0;
    const type = String.fromCharCode(b[h + 156]!);
    const dataStart = h + BLOCK;
    if (dataStart + size > b.length) {
      throw new TopologyError(
        label,
        `${label}: the archive ends inside an entry at byte ${h}; it is truncated`,
      );
    }
    const data = b.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L' || type === 'K') {
      const s = str(data, 0, data.length);
      if (type === 'L') longName = s;
      else longLink = s;
      continue;
    }
    if (type === 'x' || type === 'g') {
      // A global header ('g') sets defaults such as a charset; nothing in it changes an entry we read.
      const recs = paxRecords(data, label, h);
      if (type === 'x') pax = recs;
      continue;
    }
    const rawPath = pax?.get('path') ?? longName ?? headerPath(b, h);
    const isLink = type === '1' || type === '2';
    const rawLink = isLink ? (pax?.get('linkpath') ?? longLink ?? str(b, h + 157, 100)) : '';
    const paxSize = pax?.get('size');
    pax = null;
    longName = null;
    longLink = null;
    if (paxSize !== undefined && Number(paxSize) !== size) {
      throw new TopologyError(
        rawPath,
        `${label}: the entry ${rawPath} has a pax size the reader does not support`,
      );
    }
    const path = checkEntryPath(rawPath, label);
    if (path === '') continue;
    if (type === '0' || type === '\0' || type === '7') entries.push({ type: 'file', path, data });
    else if (type === '5') entries.push({ type: 'dir', path });
    else if (type === '2') entries.push({ type: 'symlink', path, target: rawLink });
    else if (type === '1') entries.push({ type: 'hardlink', path, target: checkEntryPath(rawLink, label) });
    // Devices, FIFOs and GNU extensions ('3', '4', '6', 'D', 'S', ...) carry nothing a reader needs.
  }
  return entries;
}

/** The path in a header: name, prefixed by the ustar prefix field when there is one. */
function headerPath(b: Buffer, h: number): string {
  const name = str(b, h, 100);
  // "ustar" at 257 (POSIX "ustar\0", GNU "ustar  \0"); only POSIX ustar uses the prefix field.
  const ustar = b[h + 257] === 0x75 && b[h + 258] === 0x73 && b[h + 259] === 0x74 && b[h + 262] === 0;
  if (!ustar || b[h + 345] === 0) return name;
  return `${str(b, h + 345, 155)}/${name}`;
}
