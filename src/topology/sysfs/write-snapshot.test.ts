import { describe, expect, it } from 'vitest';
import { tinyMachine } from '../../../test/helpers/tiny-machine.js';
import { loadBuiltinMachine } from '../machine-file/index.js';
import { openArchive } from './archive-source.js';
import { readSysfsMachine } from './read-sysfs.js';
import { writeSnapshotTar } from './write-snapshot.js';

const summary = (m: ReturnType<typeof loadBuiltinMachine>) =>
  m.functions.map((f) => ({
    name: f.name,
    id: [f.vendor, f.device, f.classCode],
    bridge: f.bridge?.name ?? f.hostBridge.name,
    acs: f.acs,
    bars: f.bars.map((b) => [b.index, b.cpuStart, b.size, b.kind, b.prefetchable]),
    driver: f.driver,
    group: f.iommuGroup,
    numa: f.numaNode,
  }));

describe('writeSnapshotTar', () => {
  for (const name of ['xeon-2s-switches', 'epyc-gpu', 'workstation']) {
    it(`${name} reads back as the same machine`, () => {
      const m = loadBuiltinMachine(name);
      const { source } = openArchive(writeSnapshotTar(m), `${name}.tar`);
      const back = readSysfsMachine(source, { name, path: `${name}.tar`, kind: 'snapshot' });
      expect(summary(back)).toEqual(summary(m));
      expect(back.cpu?.vendorId).toBe(m.cpu?.vendorId);
      expect(back.cpu?.family).toBe(m.cpu?.family);
      expect(back.cmdline).toBe(m.cmdline);
      expect(back.hostBridges.map((h) => h.name)).toEqual(m.hostBridges.map((h) => h.name));
    });
  }
  it('a machine without config bytes reads back with ACS unknown', () => {
    const m = tinyMachine([[{ kind: 'rp', acs: 0x1d, children: [{ kind: 'ep' }] }]]);
    const { source } = openArchive(writeSnapshotTar(m), 'tiny.tar');
    const back = readSysfsMachine(source, { name: 'tiny', path: 'tiny.tar', kind: 'snapshot' });
    expect(back.functions.map((f) => f.acs.state)).toEqual(['unknown', 'unknown']);
  });
});
