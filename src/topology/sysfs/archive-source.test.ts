import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { detectFormat, openArchive } from './archive-source.js';
import { buildTar, buildTarGz } from './tar-build.js';

const HWLOC = join(import.meta.dirname, '../../..', '../shared/fixtures/real/hwloc/linux');

const err = (f: () => unknown): TopologyError => {
  try {
    f();
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw e;
  }
  throw new Error('expected a TopologyError');
};

// A deterministic stand-in for "random bytes": a linear congruential sequence.
const noise = (n: number): Uint8Array => {
  const b = new Uint8Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

describe('detectFormat', () => {
  it('tells formats by magic bytes', () => {
    expect(detectFormat(buildTar([{ path: 'a', data: '' }]))).toBe('tar');
    expect(detectFormat(buildTarGz([{ path: 'a', data: '' }]))).toBe('gzip');
    expect(detectFormat(readFileSync(join(HWLOC, '2pa-pcidomain32bits.tar.bz2')))).toBe('bzip2');
    expect(detectFormat(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 1]))).toBe('xz');
    expect(detectFormat(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0]))).toBe('zstd');
    expect(detectFormat(noise(4096))).toBe('unknown');
    expect(detectFormat(new Uint8Array())).toBe('unknown');
  });
});

describe('openArchive', () => {
  it('finds the layout at the root', () => {
    const a = openArchive(
      buildTar([
        { path: 'sys/x', data: '1' },
        { path: 'proc/cmdline', data: 'q' },
      ]),
      'r.tar',
    );
    expect(a.top).toBeNull();
    expect(a.source.readText('proc/cmdline')).toBe('q');
  });
  it('finds the layout under one top folder whatever its name, ignoring the file name', () => {
    const a = openArchive(buildTarGz([{ path: 'other-name/sys/x', data: '1', mode: 0o600 }]), 'snap.tar');
    expect(a.format).toBe('gzip');
    expect(a.top).toBe('other-name');
    expect(a.source.readText('sys/x')).toBe('1');
    expect(a.source.label).toBe('snap.tar (folder other-name/)');
  });
  it('opens a real hwloc .tar.bz2 whose top folder differs from its name', () => {
    const a = openArchive(readFileSync(join(HWLOC, '40intel64-2g2n4c+pcilocality.tar.bz2')), 'x');
    expect(a.format).toBe('bzip2');
    expect(a.top).toBe('40intel64-2g2n4c+pci');
    expect(a.source.listDir('sys/bus/pci/devices')?.length).toBe(37);
  });
  it('shares bytes between a hard link and its target', () => {
    const a = openArchive(
      buildTar([
        { path: 'sys/a', data: 'same' },
        { path: 'sys/h', hardlink: 'sys/a' },
      ]),
      't',
    );
    expect(a.source.readText('sys/h')).toBe('same');
  });
  it('fails on a hard link to nothing, naming it', () => {
    const e = err(() => openArchive(buildTar([{ path: 'sys/h', hardlink: 'sys/none' }]), 't.tar'));
    expect(e.path).toBe('sys/h');
    expect(e.message).toMatch(/hard link sys\/h points to sys\/none/);
  });
  it('refuses entries with .. or an absolute path, naming the entry', () => {
    expect(err(() => openArchive(buildTarGz([{ path: 'snap/../../x', data: '' }]), 'a.tgz')).path).toBe(
      'snap/../../x',
    );
    expect(err(() => openArchive(buildTarGz([{ path: '/abs/x', data: '' }]), 'a.tgz')).path).toBe('/abs/x');
  });
  it('fails on unknown, unsupported and damaged data, naming the file', () => {
    const unknown = err(() => openArchive(noise(3000), 'random.bin'));
    expect(unknown.path).toBe('random.bin');
    expect(unknown.message).toMatch(/random\.bin: unknown file format/);
    expect(
      err(() => openArchive(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]), 'a.tar.xz')).message,
    ).toMatch(/xz-compressed archives are not supported/);
    const gz = buildTarGz([{ path: 'a', data: 'x'.repeat(5000) }]);
    expect(err(() => openArchive(gz.subarray(0, gz.length - 40), 'cut.tar.gz')).message).toMatch(
      /cut\.tar\.gz: the gzip data is damaged/,
    );
    expect(err(() => openArchive(gzipSync(noise(2000)), 'n.gz')).message).toMatch(/not a tar archive inside/);
    const bz = readFileSync(join(HWLOC, '2pa-pcidomain32bits.tar.bz2'));
    expect(err(() => openArchive(bz.subarray(0, 5000), 'cut.tar.bz2')).message).toMatch(
      /bzip2 data is damaged/,
    );
  });
});
