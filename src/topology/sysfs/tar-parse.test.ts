import { describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { buildTar, fixChecksum } from './tar-build.js';
import { checkEntryPath, isTarHeader, parseTar } from './tar-parse.js';

const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const LONG = `sys/devices/pci0000:00/${'0000:00:02.0/'.repeat(12)}config`;

describe('parseTar', () => {
  it('reads files, directories, symlinks and hard links', () => {
    const es = parseTar(
      buildTar([
        { path: 'top/', dir: true },
        { path: 'top/a', data: 'A', mode: 0o600 },
        { path: 'top/l', symlink: '../x/y' },
        { path: 'top/h', hardlink: 'top/a' },
      ]),
      't.tar',
    );
    expect(es.map((e) => [e.type, e.path])).toEqual([
      ['dir', 'top'],
      ['file', 'top/a'],
      ['symlink', 'top/l'],
      ['hardlink', 'top/h'],
    ]);
    const f = es[1]!;
    expect(f.type === 'file' && text(f.data)).toBe('A');
    const l = es[2]!;
    expect(l.type === 'symlink' && l.target).toBe('../x/y');
  });
  it('reads GNU long names and long link targets', () => {
    const es = parseTar(
      buildTar(
        [
          { path: LONG, data: 'x' },
          { path: 'l', symlink: LONG },
        ],
        { longNames: 'gnu' },
      ),
      't',
    );
    expect(LONG.length).toBeGreaterThan(100);
    expect(es[0]!.path).toBe(LONG);
    expect(es[1]!.type === 'symlink' && es[1]!.target).toBe(LONG);
  });
  it('reads pax path and linkpath records', () => {
    const es = parseTar(
      buildTar(
        [
          { path: LONG, data: 'x' },
          { path: 'l', symlink: LONG },
        ],
        { longNames: 'pax' },
      ),
      't',
    );
    expect(es.map((e) => e.path)).toEqual([LONG, 'l']);
    expect(es[1]!.type === 'symlink' && es[1]!.target).toBe(LONG);
  });
  it('reads a ustar prefix+name split path', () => {
    const tar = buildTar([{ path: 'name', data: 'x' }]);
    tar.set(new TextEncoder().encode('pre/fix'), 345);
    fixChecksum(tar.subarray(0, 512));
    expect(parseTar(tar, 't')[0]!.path).toBe('pre/fix/name');
  });
  it('normalises ./ prefixes and trailing slashes', () => {
    expect(checkEntryPath('./a//b/', 't')).toBe('a/b');
    expect(parseTar(buildTar([{ path: './', dir: true }]), 't')).toEqual([]);
  });
  it('refuses an entry with .. naming it', () => {
    const tar = buildTar([{ path: 'top/../../evil', data: 'x' }]);
    const e = (() => {
      try {
        parseTar(tar, 'bad.tar');
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(TopologyError);
    expect((e as TopologyError).path).toBe('top/../../evil');
    expect((e as TopologyError).message).toMatch(
      /bad\.tar: the archive entry top\/\.\.\/\.\.\/evil contains '\.\.'/,
    );
  });
  it('refuses an absolute entry path naming it', () => {
    expect(() => parseTar(buildTar([{ path: '/etc/passwd', data: 'x' }]), 'abs.tar')).toThrow(
      /abs\.tar: the archive entry \/etc\/passwd has an absolute path/,
    );
  });
  it('refuses a hard link whose target climbs out', () => {
    expect(() => parseTar(buildTar([{ path: 'h', hardlink: '../x' }]), 't')).toThrow(TopologyError);
  });
  it('fails on a damaged header and on a truncated archive', () => {
    const tar = buildTar([{ path: 'a', data: 'x'.repeat(2000) }]);
    const bad = tar.slice();
    bad[0] = 0x41;
    expect(() => parseTar(bad, 't.tar')).toThrow(/damaged tar header at byte 0/);
    expect(() => parseTar(tar.subarray(0, 1024), 't.tar')).toThrow(/truncated/);
  });
  it('reads a GNU base-256 size field', () => {
    const tar = buildTar([{ path: 'a', data: 'hello' }]);
    const h = tar.subarray(0, 512);
    h.fill(0, 124, 136);
    h[124] = 0x80;
    h[135] = 5;
    fixChecksum(h);
    const f = parseTar(tar, 't')[0]!;
    expect(f.type === 'file' && text(f.data)).toBe('hello');
  });
  it('recognises a header by its checksum only', () => {
    expect(isTarHeader(buildTar([{ path: 'a', data: '' }]))).toBe(true);
    expect(isTarHeader(new Uint8Array(512))).toBe(false);
    expect(isTarHeader(new Uint8Array(100))).toBe(false);
  });
});
