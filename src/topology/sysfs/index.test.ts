// openSnapshot on each kind of path a user may give, and the errors for paths that are not snapshots.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { openSnapshot, readLiveMachine } from './index.js';
import { buildTar } from './tar-build.js';

const tmp = mkdtempSync(join(tmpdir(), 'dmasim-open-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const ORACLE = join(import.meta.dirname, '../../..', '../shared/fixtures/oracle');

async function rejection(p: Promise<unknown>): Promise<TopologyError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw e;
  }
  throw new Error('expected a TopologyError');
}

/** Unpack a tar into a directory (the test's own temp dir), the way a user would with `tar x`. */
function unpackTo(dir: string, tar: Uint8Array): void {
  let off = 0;
  const td = new TextDecoder();
  while (off + 512 <= tar.length && tar[off] !== 0) {
    const h = tar.subarray(off, off + 512);
    const name = td.decode(h.subarray(0, 100)).replace(/\0.*$/s, '');
    const size = Number.parseInt(td.decode(h.subarray(124, 136)).replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    const full = join(dir, name);
    if (type === '5') mkdirSync(full, { recursive: true });
    else if (type === '0') writeFileSync(full, tar.subarray(off + 512, off + 512 + size));
    off += 512 + Math.ceil(size / 512) * 512;
  }
}

describe('openSnapshot', () => {
  it('opens an archive by content whatever its extension', async () => {
    const gz = join(ORACLE, 'switch.tar.gz');
    const asTar = join(tmp, 'renamed.tar');
    writeFileSync(asTar, gunzipSync(readFileSync(gz)));
    const m = await openSnapshot(asTar);
    expect(m.name).toBe('switch');
    expect(m.functions.length).toBe((await openSnapshot(gz)).functions.length);
  });
  it('opens a directory with the layout at its root or in its only subfolder', async () => {
    const tar = buildTar([
      { path: 'box/', dir: true },
      { path: 'box/sys/', dir: true },
      { path: 'box/sys/bus/', dir: true },
      { path: 'box/sys/bus/pci/', dir: true },
      { path: 'box/sys/bus/pci/devices/', dir: true },
      { path: 'box/proc/', dir: true },
      { path: 'box/proc/cmdline', data: 'ro\n' },
    ]);
    const outer = join(tmp, 'outer');
    mkdirSync(outer);
    unpackTo(outer, tar);
    writeFileSync(join(outer, '.DS_Store'), '');
    const a = await openSnapshot(outer);
    expect([a.name, a.cmdline, a.functions.length]).toEqual(['box', 'ro', 0]);
    const b = await openSnapshot(join(outer, 'box'));
    expect([b.name, b.cmdline]).toEqual(['box', 'ro']);
  });
  it('fails on a missing path, naming it', async () => {
    const e = await rejection(openSnapshot(join(tmp, 'nope.tar.gz')));
    expect(e.path).toBe(join(tmp, 'nope.tar.gz'));
    expect(e.message).toMatch(/does not exist/);
  });
  it('fails on a directory that is not a snapshot', async () => {
    const d = join(tmp, 'plain');
    mkdirSync(join(d, 'a'), { recursive: true });
    mkdirSync(join(d, 'b'));
    const e = await rejection(openSnapshot(d));
    expect(e.path).toBe('sys/bus/pci/devices');
    expect(e.message).toMatch(/^not a sysfs snapshot: .*plain has no sys\/bus\/pci\/devices/);
  });
  it('fails on a file of unknown format, naming it', async () => {
    const f = join(tmp, 'notes.txt');
    writeFileSync(f, 'these are not the bytes you are looking for\n'.repeat(20));
    const e = await rejection(openSnapshot(f));
    expect(e.path).toBe(f);
    expect(e.message).toMatch(/unknown file format/);
  });
});

describe('readLiveMachine', () => {
  it('fails with a TopologyError on a root that has no PCI sysfs', async () => {
    const e = await rejection(readLiveMachine(tmp));
    expect(e.message).toMatch(/^not a sysfs snapshot/);
  });
  it('fails with a TopologyError on a root that is not a directory', async () => {
    const e = await rejection(readLiveMachine(join(tmp, 'nope')));
    expect(e.message).toMatch(/is not a directory/);
  });
});
