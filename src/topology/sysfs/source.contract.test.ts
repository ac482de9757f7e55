// One conformance suite that every SysfsSource implementation runs (directory, in-memory, .tar,
// .tar.gz, archive with a top folder): the same tree must read the same, and broken links must fail
// the same way, naming the link.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { openArchive } from './archive-source.js';
import { createDirSource } from './dir-source.js';
import { type MemEntry, memorySourceFromEntries } from './memory-source.js';
import type { SysfsSource } from './source.js';
import { buildTar, buildTarGz, type TarEntry } from './tar-build.js';

const TREE: Record<string, MemEntry> = {
  'sys/a.txt': 'hello\n',
  'sys/dir/b': new Uint8Array([0, 1, 2, 255]),
  'sys/dir/up': { link: '../a.txt' },
  'sys/link-to-a': { link: 'a.txt' },
  'sys/abs': { link: '/sys/a.txt' },
  'sys/dirlink': { link: 'dir' },
  'sys/empty': { dir: true },
  'sys/dangling': { link: 'nowhere/x' },
  'sys/loop1': { link: 'loop2' },
  'sys/loop2': { link: 'loop1' },
  'sys/escape': { link: '../../etc/passwd' },
  'sys/deep-escape': { link: 'dir/../../../outside' },
};

const toTestEntries = (prefix: string): TarEntry[] =>
  Object.entries(TREE).map(([p, e]) => {
    const path = prefix + p;
    if (typeof e === 'string' || e instanceof Uint8Array) return { path, data: e };
    return 'link' in e ? { path, symlink: e.link } : { path, dir: true };
  });

const tmp = mkdtempSync(join(tmpdir(), 'dmasim-src-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function dirTree(): SysfsSource {
  const root = join(tmp, 'dir');
  for (const [p, e] of Object.entries(TREE)) {
    const full = join(root, p);
    mkdirSync(dirname(full), { recursive: true });
    if (typeof e === 'string' || e instanceof Uint8Array) writeFileSync(full, e);
    else if ('link' in e) symlinkSync(e.link, full);
    else mkdirSync(full, { recursive: true });
  }
  return createDirSource(root);
}

const implementations: [string, () => SysfsSource][] = [
  ['memory', () => memorySourceFromEntries('memory', TREE)],
  ['directory', dirTree],
  ['tar', () => openArchive(buildTar(toTestEntries('')), 'x.tar').source],
  ['tar.gz with a top folder', () => openArchive(buildTarGz(toTestEntries('snap/')), 'x.tgz').source],
];

for (const [name, make] of implementations) {
  describe(`SysfsSource contract: ${name}`, () => {
    const src = make();
    const thrown = (f: () => unknown): TopologyError => {
      try {
        f();
      } catch (e) {
        if (e instanceof TopologyError) return e;
        throw e;
      }
      throw new Error('expected a TopologyError');
    };

    it('reads files as text and bytes, through links', () => {
      expect(src.readText('sys/a.txt')).toBe('hello\n');
      expect(src.readText('sys/link-to-a')).toBe('hello\n');
      expect([...(src.readFile('sys/dirlink/b') ?? [])]).toEqual([0, 1, 2, 255]);
      expect(src.readText('sys/dirlink/up')).toBe('hello\n');
    });
    it('takes an absolute link target relative to the root', () => {
      expect(src.readText('sys/abs')).toBe('hello\n');
      expect(src.realPath('sys/abs')).toBe('sys/a.txt');
    });
    it('resolves real paths', () => {
      expect(src.realPath('sys/dirlink/up')).toBe('sys/a.txt');
      expect(src.realPath('sys/dirlink')).toBe('sys/dir');
      expect(src.realPath('./sys//dir/')).toBe('sys/dir');
    });
    it('lists directories sorted, through links', () => {
      expect(src.listDir('sys/dirlink')).toEqual(['b', 'up']);
      expect(src.listDir('sys/empty')).toEqual([]);
      expect(src.listDir('sys')).toEqual(
        [...Object.keys(TREE).map((p) => p.split('/')[1]!)].filter((v, i, a) => a.indexOf(v) === i).sort(),
      );
      expect(src.listDir('sys/a.txt')).toBeNull();
    });
    it('reads link targets without following them', () => {
      expect(src.readLink('sys/dirlink/up')).toBe('../a.txt');
      expect(src.readLink('sys/dangling')).toBe('nowhere/x');
      expect(src.readLink('sys/a.txt')).toBeNull();
      expect(src.readLink('sys/none')).toBeNull();
    });
    it('reports absence as null / false', () => {
      expect(src.readFile('sys/none')).toBeNull();
      expect(src.readFile('sys')).toBeNull();
      expect(src.readFile('sys/a.txt/x')).toBeNull();
      expect(src.listDir('sys/none')).toBeNull();
      expect(src.exists('sys/none')).toBe(false);
      expect(src.exists('sys/dir/b')).toBe(true);
      expect(src.exists('sys/dangling')).toBe(false);
      expect(thrown(() => src.realPath('sys/none')).path).toBe('sys/none');
    });
    it('fails on a dangling link, naming the link', () => {
      const e = thrown(() => src.readFile('sys/dangling'));
      expect(e.path).toBe('sys/dangling');
      expect(e.message).toMatch(/symlink sys\/dangling dangles/);
      expect(thrown(() => src.readLink('sys/dangling/x')).path).toBe('sys/dangling');
    });
    it('fails on a looping link, naming the link', () => {
      const e = thrown(() => src.readText('sys/loop1'));
      expect(e.path).toMatch(/^sys\/loop[12]$/);
      expect(e.message).toMatch(/loops/);
    });
    it('never follows a link out of the root', () => {
      for (const l of ['sys/escape', 'sys/deep-escape']) {
        const e = thrown(() => src.readFile(l));
        expect(e.path).toBe(l);
        expect(e.message).toMatch(/points outside the snapshot/);
      }
      expect(thrown(() => src.readFile('../x')).message).toMatch(/climbs above the snapshot root/);
    });
  });
}
