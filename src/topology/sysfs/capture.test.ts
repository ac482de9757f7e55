// Capture round trips: this machine's live /sys captured into a .tar.gz reads back to the same
// machine as reading /sys directly; a hand-made root shows that unreadable files are skipped and listed.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Machine } from '../../hw/pci.js';
import { detectFormat, openArchive } from './archive-source.js';
import { captureSnapshot, captureTopName } from './capture.js';
import { openSnapshot, readLiveMachine } from './index.js';

const tmp = mkdtempSync(join(tmpdir(), 'dmasim-capture-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What must survive a capture: functions, tree, ACS, identity, links, cpu, system facts. */
const essence = (m: Machine) => ({
  functions: m.functions.map((f) => ({
    name: f.name,
    parent: f.bridge?.name ?? f.hostBridge.name,
    id: [f.vendor, f.device, f.classCode, f.headerType],
    acs: f.acs,
    portType: f.portType,
    driver: f.driver,
    iommuGroup: f.iommuGroup,
    bars: f.bars,
    link: f.link,
    numaNode: f.numaNode,
    configBytes: f.config?.length ?? null,
  })),
  hostBridges: m.hostBridges.map((h) => h.name),
  cpu: m.cpu,
  cmdline: m.cmdline,
  kernelRelease: m.kernelRelease,
  iommu: m.iommu,
  numaNodes: m.numaNodes,
});

const LIVE = existsSync('/sys/bus/pci/devices');

describe('captureSnapshot of the live system', () => {
  it.skipIf(!LIVE)(
    'reads back to the same machine as readLiveMachine("/") (skipped only where /sys/bus/pci/devices is absent)',
    async () => {
      const out = join(tmp, 'live-box.tar.gz');
      const r = await captureSnapshot('/', out);
      expect(r.top).toBe('live-box');
      expect(detectFormat(readFileSync(out))).toBe('gzip');
      const live = await readLiveMachine('/');
      expect(r.functions).toBe(live.functions.length);
      expect(r.files).toBeGreaterThan(live.functions.length * 3);
      const back = await openSnapshot(out);
      expect(back.name).toBe('live-box');
      expect(back.source.kind).toBe('snapshot');
      expect(live.source.kind).toBe('live');
      expect(back.functions.length).toBeGreaterThan(0);
      expect(essence(back)).toEqual(essence(live));
      expect([...back.notes].sort()).toEqual([...live.notes].sort());
    },
  );
});

describe('captureSnapshot of a hand-made root', () => {
  const root = join(tmp, 'root');
  const put = (rel: string, data: string | Uint8Array) => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), data);
  };
  const link = (rel: string, target: string) => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    symlinkSync(target, join(root, rel));
  };
  const dev = 'sys/devices/pci0000:00/0000:00:03.0';
  const cfg = new Uint8Array(64);
  cfg.set([0x86, 0x80, 0x0e, 0x10], 0);
  cfg[11] = 0x02;
  put(`${dev}/config`, cfg);
  put(`${dev}/vendor`, '0x8086\n');
  put(`${dev}/uevent`, 'not captured\n');
  link(`${dev}/resource`, 'resource'); // a self-loop: exists, but cannot be read
  link(`${dev}/driver`, '../../../bus/pci/drivers/e1000e');
  link(`${dev}/iommu_group`, '../../../kernel/iommu_groups/2');
  link('sys/bus/pci/devices/0000:00:03.0', '../../../devices/pci0000:00/0000:00:03.0');
  link('sys/kernel/iommu_groups/2/devices/0000:00:03.0', '../../../../devices/pci0000:00/0000:00:03.0');
  mkdirSync(join(root, 'sys/devices/system/node/node0'), { recursive: true });
  put('proc/cpuinfo', 'vendor_id : GenuineIntel\ncpu family : 6\nmodel : 85\nflags : lm\n');
  put('proc/cmdline', 'quiet\n');

  it('keeps the layout, the links as written, and lists what it could not read', async () => {
    const out = join(tmp, 'hand.tgz');
    const r = await captureSnapshot(root, out);
    expect(r.top).toBe('hand');
    expect(r.skipped.map((s) => s.path)).toEqual([`${dev}/resource`]);
    expect(r.skipped[0]!.reason).toMatch(/loops/);
    const a = openArchive(readFileSync(out), out);
    expect(a.top).toBe('hand');
    expect(a.source.readLink(`${dev}/driver`)).toBe('../../../bus/pci/drivers/e1000e');
    expect(a.source.readFile(`${dev}/uevent`)).toBeNull();
    expect(a.source.listDir('sys/kernel/iommu_groups/2/devices')).toEqual(['0000:00:03.0']);
    const m = await openSnapshot(out);
    const f = m.byName.get('0000:00:03.0')!;
    expect([f.vendor, f.device, f.driver, f.iommuGroup]).toEqual([0x8086, 0x100e, 'e1000e', 2]);
    expect([m.iommu, m.numaNodes, m.cmdline, m.cpu?.model]).toEqual([true, 1, 'quiet', 85]);
  });
  it('names the top folder after the output file', () => {
    expect(captureTopName('/x/y/box-2024.tar.gz')).toBe('box-2024');
    expect(captureTopName('snap.tgz')).toBe('snap');
    expect(captureTopName('plain')).toBe('plain');
  });
  it('refuses a root without sys/bus/pci/devices', async () => {
    await expect(captureSnapshot(join(root, 'proc'), join(tmp, 'none.tar.gz'))).rejects.toThrow(
      /has no sys\/bus\/pci\/devices/,
    );
    expect(existsSync(join(tmp, 'none.tar.gz'))).toBe(false);
  });
});
