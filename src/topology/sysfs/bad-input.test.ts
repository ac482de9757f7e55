// Bad snapshots end to end: small archives (and one directory) written to a temp dir and opened the
// way the CLI opens them. Each must fail with a TopologyError whose message names the archive and the
// file inside it, never with a raw exception.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TopologyError } from '../errors.js';
import { openSnapshot } from './index.js';
import { buildTar, buildTarGz, type TarEntry } from './tar-build.js';

const tmp = mkdtempSync(join(tmpdir(), 'dmasim-bad-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const DEV = 'snap/sys/devices/pci0000:00/0000:00:04.0';

/** A one-function snapshot (an e1000e on the root bus) with `override` replacing or adding entries. */
function snapshot(override: Record<string, TarEntry | null> = {}): TarEntry[] {
  const cfg = new Uint8Array(256);
  cfg.set([0x86, 0x80, 0xd3, 0x10], 0);
  cfg[11] = 0x02;
  const base: Record<string, TarEntry | null> = {
    link: {
      path: 'snap/sys/bus/pci/devices/0000:00:04.0',
      symlink: '../../../devices/pci0000:00/0000:00:04.0',
    },
    config: { path: `${DEV}/config`, data: cfg },
    cpuinfo: {
      path: 'snap/proc/cpuinfo',
      data: 'vendor_id : GenuineIntel\ncpu family : 6\nmodel : 85\nflags : lm\n',
    },
  };
  return Object.values({ ...base, ...override }).filter((e): e is TarEntry => e !== null);
}

async function failure(name: string, bytes: Uint8Array): Promise<{ e: TopologyError; file: string }> {
  const file = join(tmp, name);
  writeFileSync(file, bytes);
  try {
    await openSnapshot(file);
  } catch (e) {
    if (e instanceof TopologyError) return { e, file };
    throw e;
  }
  throw new Error(`${name}: expected a TopologyError`);
}

describe('bad snapshots give a TopologyError naming the file', () => {
  it('the good snapshot they start from opens', async () => {
    const file = join(tmp, 'good.tar.gz');
    writeFileSync(file, buildTarGz(snapshot()));
    const m = await openSnapshot(file);
    expect(m.functions.map((f) => [f.name, f.device])).toEqual([['0000:00:04.0', 0x10d3]]);
  });
  it('truncated config', async () => {
    const { e, file } = await failure(
      'trunc.tar.gz',
      buildTarGz(snapshot({ config: { path: `${DEV}/config`, data: new Uint8Array(10) } })),
    );
    expect(e.path).toBe('sys/devices/pci0000:00/0000:00:04.0/config');
    expect(e.message).toContain(
      `${file} (folder snap/): sys/devices/pci0000:00/0000:00:04.0/config is not a usable config space`,
    );
  });
  it('garbled config', async () => {
    const junk = new Uint8Array(256).fill(0xff);
    const { e, file } = await failure(
      'garbled.tgz',
      buildTarGz(snapshot({ config: { path: `${DEV}/config`, data: junk } })),
    );
    expect(e.path).toMatch(/0000:00:04.0\/config$/);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/vendor 0xffff/);
  });
  it('missing files (no config, no vendor/device/class)', async () => {
    const uevent = { path: `${DEV}/uevent`, data: 'PCI_SLOT_NAME=0000:00:04.0\n' };
    const { e, file } = await failure('missing.tar', buildTar(snapshot({ config: null, uevent })));
    expect(e.path).toMatch(/0000:00:04.0\/config$/);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/neither a config file nor readable vendor, device and class/);
  });
  it('a dangling symlink', async () => {
    const link = {
      path: 'snap/sys/bus/pci/devices/0000:00:05.0',
      symlink: '../../../devices/pci0000:00/0000:00:05.0',
    };
    const { e, file } = await failure('dangling.tar.gz', buildTarGz(snapshot({ extra: link })));
    expect(e.path).toBe('sys/bus/pci/devices/0000:00:05.0');
    expect(e.message).toContain(
      `${file} (folder snap/): the symlink sys/bus/pci/devices/0000:00:05.0 dangles`,
    );
  });
  it('a looping symlink', async () => {
    const loop = { path: 'snap/sys/bus/pci/devices/0000:00:05.0', symlink: '../devices/0000:00:05.0' };
    const back = { path: 'snap/sys/bus/devices/0000:00:05.0', symlink: '../pci/devices/0000:00:05.0' };
    const { e, file } = await failure('loop.tar.gz', buildTarGz(snapshot({ loop, back })));
    expect(e.path).toMatch(/0000:00:05.0$/);
    expect(e.message).toContain(file);
    expect(e.message).toMatch(/loops/);
  });
  it('an unknown format (random bytes)', async () => {
    let x = 7;
    const noise = Uint8Array.from({ length: 4096 }, () => {
      x = (x * 1103515245 + 12345) >>> 0;
      return x >>> 24;
    });
    const { e, file } = await failure('noise.tar.gz', noise);
    expect(e.path).toBe(file);
    expect(e.message).toMatch(/unknown file format/);
  });
  it("an archive entry with '..'", async () => {
    const evil = { path: 'snap/../../../tmp/evil', data: 'x' };
    const { e, file } = await failure('dotdot.tar.gz', buildTarGz(snapshot({ evil })));
    expect(e.path).toBe('snap/../../../tmp/evil');
    expect(e.message).toContain(`${file}: the archive entry snap/../../../tmp/evil contains '..'`);
  });
  it('an archive entry with an absolute path', async () => {
    const evil = { path: '/etc/cron.d/evil', data: 'x' };
    const { e, file } = await failure('absolute.tar', buildTar(snapshot({ evil })));
    expect(e.path).toBe('/etc/cron.d/evil');
    expect(e.message).toContain(`${file}: the archive entry /etc/cron.d/evil has an absolute path`);
  });
  it('a directory that is not a snapshot', async () => {
    const dir = join(tmp, 'photos');
    mkdirSync(join(dir, '2024'), { recursive: true });
    writeFileSync(join(dir, '2024', 'a.jpg'), 'x');
    try {
      await openSnapshot(dir);
      throw new Error('expected a TopologyError');
    } catch (e) {
      expect(e).toBeInstanceOf(TopologyError);
      expect((e as TopologyError).message).toContain(
        `not a sysfs snapshot: ${join(dir, '2024')} has no sys/bus/pci/devices`,
      );
    }
  });
  it('an archive that is not a snapshot', async () => {
    const { e, file } = await failure('notes.tar.gz', buildTarGz([{ path: 'notes/readme.txt', data: 'hi' }]));
    expect(e.message).toContain(`not a sysfs snapshot: ${file} (folder notes/) has no sys/bus/pci/devices`);
  });
});
