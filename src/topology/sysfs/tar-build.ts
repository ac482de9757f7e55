// Build tar archives in memory, header by header (with the tar package's Header and
// Pax encoders). Used by the snapshot writer, and by tests to make what a well-behaved tar never writes: entries with `..` or an
// absolute path, GNU long-name records, pax records, hard links, truncated streams.

import { gzipSync } from 'node:zlib';
import { Header, type HeaderData, Pax } from 'tar';

export type TarEntry =
  | { readonly path: string; readonly data: string | Uint8Array; readonly mode?: number }
  | { readonly path: string; readonly dir: true }
  | { readonly path: string; readonly symlink: string }
  | { readonly path: string; readonly hardlink: string };

export interface BuildOptions {
  /** How to store a path longer than 100 bytes: a GNU 'L' record (default) or a pax 'x' record. */
  readonly longNames?: 'gnu' | 'pax';
}

const enc = new TextEncoder();
const pad = (n: number): number => Math.ceil(n / 512) * 512;

function block(data: HeaderData): Uint8Array {
  const buf = Buffer.alloc(512);
  new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), ...data }).encode(buf, 0);
  return buf;
}

function withBody(head: Uint8Array, body: Uint8Array): Uint8Array[] {
  const b = new Uint8Array(pad(body.length));
  b.set(body);
  return [head, b];
}

/** A GNU long-name ('L') or long-link ('K') record carrying `value`. */
function gnuLong(type: 'NextFileHasLongPath' | 'NextFileHasLongLinkpath', value: string): Uint8Array[] {
  const body = enc.encode(`${value}\0`);
  return withBody(block({ path: '././@LongLink', type, size: body.length }), body);
}

/** The blocks of one entry, with a long-name record first when its path needs one. */
function entryBlocks(e: TarEntry, opts: BuildOptions): Uint8Array[] {
  const out: Uint8Array[] = [];
  const data = 'data' in e ? (typeof e.data === 'string' ? enc.encode(e.data) : e.data) : new Uint8Array();
  const link = 'symlink' in e ? e.symlink : 'hardlink' in e ? e.hardlink : undefined;
  const type = 'data' in e ? 'File' : 'dir' in e ? 'Directory' : 'symlink' in e ? 'SymbolicLink' : 'Link';
  let path = e.path;
  if (path.length > 100) {
    if (opts.longNames === 'pax') out.push(new Pax({ path }).encode());
    else out.push(...gnuLong('NextFileHasLongPath', path));
    path = path.slice(0, 100);
  }
  let linkpath = link;
  if (link !== undefined && link.length > 100) {
    if (opts.longNames === 'pax') out.push(new Pax({ linkpath: link }).encode());
    else out.push(...gnuLong('NextFileHasLongLinkpath', link));
    linkpath = link.slice(0, 100);
  }
  const mode = 'mode' in e && e.mode !== undefined ? e.mode : 'dir' in e ? 0o755 : 0o644;
  const head = block({ path, type, size: data.length, mode, ...(linkpath ? { linkpath } : {}) });
  out.push(...withBody(head, data));
  return out;
}

/** Recompute a header's checksum after editing it. */
export function fixChecksum(h: Uint8Array): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.set(enc.encode(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
}

/** Concatenate entries into a tar stream ending with two zero blocks. */
export function buildTar(entries: readonly TarEntry[], opts: BuildOptions = {}): Uint8Array {
  const parts = entries.flatMap((e) => entryBlocks(e, opts));
  parts.push(new Uint8Array(1024));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const buildTarGz = (entries: readonly TarEntry[], opts: BuildOptions = {}): Uint8Array =>
  gzipSync(buildTar(entries, opts));
