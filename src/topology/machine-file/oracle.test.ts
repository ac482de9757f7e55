// The machine file qemu-switch-iommu.yaml against what Linux 6.1 really did on that QEMU machine
// (../shared/fixtures/oracle/): the ACS control bytes read from each snapshot's config files, and the
// P2PDMA decision of every pair of endpoints, for the switch-iommu case and its command-line variants.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeConfig } from '../../hw/pci-config.js';
import { calcMapTypeAndDist, createP2pdmaContext, pciP2pdmaDistance } from '../../kernel/pci/p2pdma.js';
import { BUILTIN_DIR, machineFromYaml } from './index.js';

const ORACLE = join(import.meta.dirname, '..', '..', '..', '..', 'shared', 'fixtures', 'oracle');

/** The regular files of a .tar.gz (ustar, with GNU long names and pax paths), by path. */
function tarFiles(path: string): Map<string, Buffer> {
  const buf = gunzipSync(readFileSync(path));
  const out = new Map<string, Buffer>();
  const str = (b: Buffer) => b.toString('latin1').replace(/\0.*$/s, '');
  let longName: string | null = null;
  for (let off = 0; off + 512 <= buf.length; ) {
    const h = buf.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const size = Number.parseInt(str(h.subarray(124, 136)).trim() || '0', 8);
    const type = String.fromCharCode(h[156]!);
    const body = buf.subarray(off + 512, off + 512 + size);
    const prefix = str(h.subarray(345, 500));
    const name = longName ?? (prefix ? `${prefix}/${str(h.subarray(0, 100))}` : str(h.subarray(0, 100)));
    longName = null;
    if (type === 'L') longName = str(body);
    else if (type === 'x') longName = /(?:^|\n)\d+ path=([^\n]*)/.exec(body.toString('utf8'))?.[1] ?? null;
    else if (type === '0' || type === '\0') out.set(name, body);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

interface Expected {
  cmdline: string;
  pairs: { provider: string; client: string; mapType: string; distance: number; warnings: string[] }[];
}

/** A snapshot's config bytes by BDF, its kernel command line, and the kernel's decisions. */
function oracleCase(name: string) {
  const files = tarFiles(join(ORACLE, `${name}.tar.gz`));
  const configs = new Map<string, Buffer>();
  for (const [p, b] of files) {
    const m = /\/sys\/devices\/.*\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\/config$/.exec(p);
    if (m) configs.set(m[1]!, b);
  }
  const expected = JSON.parse(readFileSync(join(ORACLE, `${name}.expected.json`), 'utf8')) as Expected;
  return { configs, cmdline: expected.cmdline, expected };
}

/** qemu-switch-iommu.yaml booted with another command line. */
function qemuMachine(cmdline: string) {
  const text = readFileSync(join(BUILTIN_DIR, 'qemu-switch-iommu.yaml'), 'utf8').replace(
    /^ {2}cmdline: .*$/m,
    `  cmdline: ${JSON.stringify(cmdline)}`,
  );
  return machineFromYaml(text, 'qemu-switch-iommu.yaml', { kernel: '6.1' });
}

const CASES = ['switch-iommu', 'switch-iommu-disable-acs', 'disable-acs-id', 'iommu-off', 'iommu-default'];

describe('qemu-switch-iommu.yaml against the Linux 6.1 oracle', () => {
  for (const name of CASES) {
    it(`${name}: every function's ACS capability and control equal the snapshot's config bytes`, () => {
      const o = oracleCase(name);
      const { machine } = qemuMachine(o.cmdline);
      expect(o.configs.size).toBe(machine.functions.length);
      for (const f of machine.functions) {
        const real = o.configs.get(f.name);
        expect(real, f.name).toBeDefined();
        const ra = decodeConfig(new Uint8Array(real!)).acs;
        const ma = f.acs;
        expect(ma.state, f.name).toBe(ra.state);
        if (ra.state === 'present' && ma.state === 'present')
          expect([ma.cap, ma.ctrl], f.name).toEqual([ra.cap, ra.ctrl]);
      }
    });

    it(`${name}: the P2PDMA decision of every pair matches the kernel's`, () => {
      const o = oracleCase(name);
      const { machine } = qemuMachine(o.cmdline);
      const log: string[] = [];
      const ctx = createP2pdmaContext(machine, '6.1', { log: (l) => log.push(l) });
      for (const pair of o.expected.pairs) {
        const p = machine.byName.get(pair.provider)!;
        const c = machine.byName.get(pair.client)!;
        const mark = log.length;
        const dist = pciP2pdmaDistance(ctx, p, c, true);
        const warnings = log.slice(mark);
        const where = `${pair.provider} -> ${pair.client}`;
        expect(calcMapTypeAndDist(ctx, p, c, false).mapType, where).toBe(pair.mapType);
        expect(dist, where).toBe(pair.distance);
        expect(warnings, where).toEqual(pair.warnings);
      }
    });
  }

  it('logs what Linux logs for the BDF list (the switch port has no ACS capability)', () => {
    const { bootLog } = qemuMachine(oracleCase('switch-iommu-disable-acs').cmdline);
    expect(bootLog.map((l) => l.text)).toEqual([
      'pci 0000:00:03.0: disabled ACS redirect',
      'pci 0000:02:00.0: cannot disable ACS redirect for this hardware as it does not have ACS capabilities',
    ]);
  });
});
