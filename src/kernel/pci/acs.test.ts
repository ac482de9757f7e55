import { describe, expect, it } from 'vitest';
import { buildMachine, type FunctionSpec, hostBridgeName } from '../../hw/machine-builder.js';
import type { PciFunction } from '../../hw/pci.js';
import { decodeConfig } from '../../hw/pci-config.js';
import { encodeConfig } from '../../hw/pci-config-encode.js';
import type { PciePortType } from '../../hw/pci-regs.js';
import {
  acsParamMatchedFunctions,
  acsParamMatches,
  iommuBootState,
  iommuRequestsAcs,
  parseKernelCmdline,
  pciDevStrMatch,
  pciEnableAcs,
} from './acs.js';
import { kernelSscanf, pciSetupOptions } from './acs-param.js';

interface Tiny {
  name: string;
  parent: string | null;
  id: [number, number];
  type: PciePortType | 'none';
  acsCap?: number;
  fw?: number;
  sub?: [number, number];
}

/**
 * The switch-iommu oracle topology, trimmed: three QEMU generic root ports (1b36:000c, ACS cap 0x005f),
 * an x3130 switch (no ACS) under the first, an e1000e under the second.
 */
const QEMU: Tiny[] = [
  { name: '00:00.0', parent: null, id: [0x8086, 0x29c0], type: 'none' },
  { name: '00:02.0', parent: null, id: [0x1b36, 0x000c], type: 'root-port', acsCap: 0x5f },
  { name: '00:03.0', parent: null, id: [0x1b36, 0x000c], type: 'root-port', acsCap: 0x5f },
  { name: '00:04.0', parent: null, id: [0x1b36, 0x000c], type: 'root-port', acsCap: 0x5f },
  { name: '01:00.0', parent: '00:02.0', id: [0x104c, 0x8232], type: 'upstream-port' },
  { name: '02:00.0', parent: '01:00.0', id: [0x104c, 0x8233], type: 'downstream-port' },
  { name: '02:01.0', parent: '01:00.0', id: [0x104c, 0x8233], type: 'downstream-port' },
  { name: '03:00.0', parent: '02:00.0', id: [0x1b36, 0x0010], type: 'endpoint', sub: [0x1af4, 0x1100] },
  { name: '05:00.0', parent: '00:03.0', id: [0x8086, 0x10d3], type: 'endpoint', sub: [0x8086, 0] },
];

function tinyMachine(nodes: Tiny[] = QEMU) {
  const fns: FunctionSpec[] = nodes.map((n) => {
    const bridge = n.type !== 'endpoint' && n.type !== 'none';
    const acs =
      n.acsCap === undefined
        ? ({ state: 'absent' } as const)
        : ({ state: 'present', capOffset: 0x148, cap: n.acsCap, ctrl: n.fw ?? 0 } as const);
    const fields = {
      vendor: n.id[0],
      device: n.id[1],
      revision: 0,
      classCode: bridge ? 0x060400 : n.type === 'none' ? 0x060000 : 0x020000,
      headerType: bridge ? 1 : 0,
      multifunction: false,
      subsystemVendor: bridge ? null : (n.sub?.[0] ?? n.id[0]),
      subsystemDevice: bridge ? null : (n.sub?.[1] ?? n.id[1]),
      secondaryBus: bridge ? 0 : null,
      subordinateBus: bridge ? 0 : null,
      portType: n.type,
      link: null,
      acs,
      sriov: null,
    };
    return {
      ...fields,
      name: n.name,
      parent: n.parent
        ? { kind: 'bridge', name: n.parent }
        : { kind: 'host', hostBridge: hostBridgeName(0, 0) },
      config: encodeConfig(fields),
    } satisfies FunctionSpec;
  });
  return buildMachine({
    name: 'tiny',
    source: { kind: 'machine-file', path: 'test' },
    cpu: null,
    cmdline: null,
    iommu: true,
    hostBridges: [{ name: hostBridgeName(0, 0), domain: 0, rootBus: 0 }],
    functions: fns,
  });
}

const fn = (m: ReturnType<typeof tinyMachine>, name: string): PciFunction => m.byName.get(`0000:${name}`)!;
const ctrlOf = (m: ReturnType<typeof tinyMachine>, name: string): number => {
  const f = fn(m, name);
  if (f.acs.state !== 'present') throw new Error(`${name} has no ACS`);
  const bytes = decodeConfig(f.config!).acs;
  // The model and the config bytes always agree.
  expect(bytes).toEqual(f.acs);
  return f.acs.ctrl;
};

describe('pciEnableAcs (oracle facts, Linux 6.1)', () => {
  it('turns on SV|RR|CR|UF of a generic root port (cap 0x005f -> ctrl 0x001d) when ACS is requested', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, { acsRequested: true, cmdline: 'intel_iommu=on', version: '6.1' });
    expect(log).toEqual([]);
    for (const rp of ['00:02.0', '00:03.0', '00:04.0']) expect(ctrlOf(m, rp)).toBe(0x001d);
  });

  it('leaves ACS control alone when no IOMMU asked for ACS (intel_iommu=off)', () => {
    const m = tinyMachine();
    pciEnableAcs(m, { acsRequested: false, cmdline: 'intel_iommu=off', version: '6.1' });
    expect(ctrlOf(m, '00:02.0')).toBe(0);
  });

  it('clears RR|CR|EC for the BDF list of pci=disable_acs_redir= (0x001d -> 0x0011) and logs each', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: true,
      cmdline: 'quiet intel_iommu=on pci=disable_acs_redir=0000:00:03.0;0000:02:00.0',
      version: '6.1',
    });
    expect(ctrlOf(m, '00:02.0')).toBe(0x001d);
    expect(ctrlOf(m, '00:03.0')).toBe(0x0011);
    expect(ctrlOf(m, '00:04.0')).toBe(0x001d);
    expect(log.map((l) => l.text)).toEqual([
      'pci 0000:00:03.0: disabled ACS redirect',
      'pci 0000:02:00.0: cannot disable ACS redirect for this hardware as it does not have ACS capabilities',
    ]);
    expect(log.map((l) => l.level)).toEqual(['info', 'warn']);
  });

  it('matches the pci:<vendor>:<device> form by ID (every generic root port)', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: true,
      cmdline: 'intel_iommu=on pci=disable_acs_redir=pci:1b36:000c',
      version: '6.1',
    });
    for (const rp of ['00:02.0', '00:03.0', '00:04.0']) expect(ctrlOf(m, rp)).toBe(0x0011);
    expect(log).toHaveLength(3);
  });

  it('logs the parse failure once, with the whole parameter, and disables nothing', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: true,
      cmdline: 'pci=disable_acs_redir=0000:00:0g.0',
      version: '6.1',
    });
    expect(log).toEqual([
      { level: 'info', text: "PCI: Can't parse disable_acs_redir parameter: 0000:00:0g.0" },
    ]);
    expect(ctrlOf(m, '00:03.0')).toBe(0x001d);
  });

  it('applies disable_acs_redir to what firmware enabled even without an IOMMU', () => {
    const m = tinyMachine(QEMU.map((n) => (n.acsCap ? { ...n, fw: 0x001d } : n)));
    pciEnableAcs(m, { acsRequested: false, cmdline: 'pci=disable_acs_redir=00:04.0', version: '6.1' });
    expect(ctrlOf(m, '00:04.0')).toBe(0x0011);
    expect(ctrlOf(m, '00:02.0')).toBe(0x001d);
  });

  it('cuts a comma-separated list at pci= option level, as pci_setup() does', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: true,
      cmdline: 'pci=disable_acs_redir=0000:00:03.0,0000:00:04.0',
      version: '6.1',
    });
    expect(log.map((l) => l.text)).toEqual([
      "PCI: Unknown option `0000:00:04.0'",
      'pci 0000:00:03.0: disabled ACS redirect',
    ]);
    expect(ctrlOf(m, '00:04.0')).toBe(0x001d);
  });

  it('adds Translation Blocking for pci=noats and below external-facing ports', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, { acsRequested: true, cmdline: 'pci=noats', version: '6.1' });
    expect(log).toEqual([{ level: 'info', text: 'PCIe: ATS is disabled' }]);
    expect(ctrlOf(m, '00:02.0')).toBe(0x001f);
    const m2 = tinyMachine();
    pciEnableAcs(m2, {
      acsRequested: true,
      cmdline: null,
      version: '6.1',
      externalFacing: new Set(['0000:00:04.0']),
    });
    expect([ctrlOf(m2, '00:03.0'), ctrlOf(m2, '00:04.0')]).toEqual([0x001d, 0x001f]);
  });
});

describe('pciEnableAcs (newest: __pci_config_acs)', () => {
  it('rebuilds a named device from the firmware value and logs the result', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: true,
      cmdline: 'pci=disable_acs_redir=0000:00:03.0;0000:02:00.0',
      version: 'newest',
    });
    // Bits outside RR|CR|EC come from firmware (0), so the kernel defaults SV and UF are dropped too.
    expect(ctrlOf(m, '00:03.0')).toBe(0);
    expect(ctrlOf(m, '00:02.0')).toBe(0x001d);
    // A device without an ACS capability returns early: nothing is printed for 02:00.0.
    expect(log.map((l) => l.text)).toEqual(['pci 0000:00:03.0: Configured ACS to 0x0000']);
  });

  it('applies pci=config_acs= flags (bit 0 last) and masks by what hardware implements', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: false,
      cmdline: 'pci=config_acs=1111111@0000:00:02.0;x1x1@0000:00:03.0',
      version: 'newest',
    });
    expect(log.map((l) => l.text)).toEqual([
      'pci 0000:00:02.0: Configured ACS to 0x007f',
      'pci 0000:00:03.0: Configured ACS to 0x0005',
    ]);
    // EC (0x20) is not in the capability 0x5f: the register reads it back as 0.
    expect(ctrlOf(m, '00:02.0')).toBe(0x005f);
    expect(ctrlOf(m, '00:03.0')).toBe(0x0005);
  });

  it('complains per device about malformed flags and once about an unparsable device', () => {
    const m = tinyMachine();
    const log = pciEnableAcs(m, {
      acsRequested: false,
      cmdline: 'pci=config_acs=0000:00:02.0',
      version: 'newest',
    });
    expect(log.map((l) => l.text)).toEqual([
      'pci 0000:00:02.0: ACS Flags missing',
      'pci 0000:00:03.0: ACS Flags missing',
      'pci 0000:00:04.0: ACS Flags missing',
    ]);
    const m2 = tinyMachine();
    const log2 = pciEnableAcs(m2, { acsRequested: false, cmdline: 'pci=config_acs=1@zz', version: 'newest' });
    expect(log2.map((l) => l.text)).toEqual(["PCI: Can't parse ACS command line parameter"]);
    const log3 = pciEnableAcs(tinyMachine(), {
      acsRequested: false,
      cmdline: 'pci=config_acs=12@00:02.0',
      version: 'newest',
    });
    expect(log3[0]?.text).toBe('pci 0000:00:02.0: Invalid ACS flags... Ignoring');
    const log4 = pciEnableAcs(tinyMachine(), {
      acsRequested: false,
      cmdline: 'pci=config_acs=10000000@00:02.0',
      version: 'newest',
    });
    expect(log4[0]?.text).toBe('pci 0000:00:02.0: Invalid ACS flags specified');
  });

  it('does not know config_acs in 6.1', () => {
    const log = pciEnableAcs(tinyMachine(), {
      acsRequested: false,
      cmdline: 'pci=config_acs=1@00:02.0',
      version: '6.1',
    });
    expect(log.map((l) => l.text)).toEqual(["PCI: Unknown option `config_acs=1@00:02.0'"]);
  });
});

describe('pciDevStrMatch', () => {
  const m = tinyMachine();
  const match = (name: string, s: string) => acsParamMatches(fn(m, name), s);
  it('takes [domain:]bus:dev.fn, with or without the domain', () => {
    expect(match('00:03.0', '0000:00:03.0')).toBe('match');
    expect(match('00:03.0', '00:03.0')).toBe('match');
    expect(match('00:03.0', '0001:00:03.0')).toBe('no-match');
    // PCI_DEVFN() masks the slot to 5 bits: 0x23 is slot 3.
    expect(match('00:03.0', '00:23.0')).toBe('match');
  });
  it('follows a devfn path down from a root-bus device', () => {
    expect(match('02:01.0', '0000:00:02.0/00.0/01.0')).toBe('match');
    expect(match('02:01.0', '0000:00:03.0/00.0/01.0')).toBe('no-match');
    expect(match('03:00.0', '00:02.0/0.0/0.0/0.0')).toBe('match');
    expect(match('02:01.0', '0000:00:02.0/00.0/01.0q')).toBe('parse-error');
    // As in the kernel, "0x" is a hex prefix even with no digit after it: "01.0x" reads function 0.
    expect(match('02:01.0', '0000:00:02.0/00.0/01.0x')).toBe('match');
  });
  it('takes pci:vendor:device[:subvendor:subdevice], 0 matching anything', () => {
    expect(match('03:00.0', 'pci:1b36:0010')).toBe('match');
    expect(match('03:00.0', 'pci:1b36:0010:1af4:1100')).toBe('match');
    expect(match('03:00.0', 'pci:1b36:0010:1af4:1101')).toBe('no-match');
    expect(match('03:00.0', 'pci:0:0010')).toBe('match');
    expect(match('03:00.0', 'pci:1b36')).toBe('parse-error');
  });
  it('separates entries by ";" (and "," only after the pci: form)', () => {
    expect(match('00:04.0', '00:03.0;00:04.0')).toBe('match');
    expect(match('00:04.0', 'pci:8086:10d3,00:04.0')).toBe('match');
    // A BDF runs to the next ';', so "a,b" does not parse at all, not even for a.
    expect(match('00:03.0', '0000:00:03.0,0000:00:04.0')).toBe('parse-error');
    expect(match('00:04.0', '00:03.0 00:04.0')).toBe('parse-error');
  });
  it('reports where it stopped, and EINVAL for garbage', () => {
    const f = fn(m, '00:02.0');
    expect(pciDevStrMatch(f, 'pci:1b36:000c;rest')).toEqual({ ok: true, value: { matched: true, end: 13 } });
    const bad = pciDevStrMatch(f, 'hello');
    expect(bad.ok ? null : bad.errno).toBe('EINVAL');
    expect(acsParamMatchedFunctions(m, 'pci:1b36:000c').map((x) => x.name)).toEqual([
      '0000:00:02.0',
      '0000:00:03.0',
      '0000:00:04.0',
    ]);
  });
});

describe('boot parameters', () => {
  it('scans like the kernel vsscanf', () => {
    expect(kernelSscanf('0x1b36:000c', '%hx:%hx%n')).toEqual({ num: 2, vals: [0x1b36, 0xc, 11] });
    expect(kernelSscanf(' 12: 3.4', '%x:%x.%x%c')).toEqual({ num: 3, vals: [0x12, 3, 4] });
    expect(kernelSscanf('12345:0', '%hx:%hx').vals[0]).toBe(0x2345);
    expect(kernelSscanf('/1.2q', '/%x.%x%c')).toEqual({ num: 3, vals: [1, 2, 'q'] });
    expect(kernelSscanf('g', '%x').num).toBe(0);
  });
  it('splits the command line with quotes and stops at --', () => {
    expect(parseKernelCmdline('ro  "pci=disable_acs_redir=00:01.0" quiet=1 a="b c" -- init=x')).toEqual([
      { name: 'ro', value: null },
      { name: 'pci', value: 'disable_acs_redir=00:01.0' },
      { name: 'quiet', value: '1' },
      { name: 'a', value: 'b c' },
    ]);
  });
  it('lets a later disable_acs_redir= replace an earlier one and knows the other pci= options', () => {
    const s = pciSetupOptions(
      'pci=disable_acs_redir=00:01.0 pci=realloc=off,nocrs,disable_acs_redir=00:02.0',
      '6.1',
    );
    expect(s.disableAcsRedir).toBe('00:02.0');
    expect(s.log).toEqual([]);
  });
});

describe('iommuRequestsAcs', () => {
  const intel = { vendor: 'intel' } as const;
  const amd = { vendor: 'amd' } as const;
  it('Intel: DMAR on by default (Debian config) unless intel_iommu=off or iommu=off', () => {
    expect(iommuRequestsAcs(intel, null)).toBe(true);
    expect(iommuRequestsAcs(intel, 'intel_iommu=on')).toBe(true);
    expect(iommuRequestsAcs(intel, 'intel_iommu=off')).toBe(false);
    expect(iommuRequestsAcs(intel, 'intel_iommu=on iommu=off')).toBe(false);
    expect(iommuRequestsAcs({ vendor: 'intel', intelDefaultOn: false }, null)).toBe(false);
    expect(iommuRequestsAcs({ vendor: 'intel', intelDefaultOn: false }, 'intel_iommu=sm_on,on')).toBe(true);
    expect(iommuRequestsAcs({ vendor: 'intel', platformOptIn: true }, 'intel_iommu=off')).toBe(true);
  });
  it('AMD: an IVRS table requests ACS unless iommu=off and intremap=off; amd_iommu=off does not stop it', () => {
    expect(iommuRequestsAcs(amd, 'iommu=pt')).toBe(true);
    // Real 6.1 (oracle-extra amd-iommu-iommu-off / amd-iommu-off-intremap): interrupt remapping still asks.
    expect(iommuRequestsAcs(amd, 'iommu=off')).toBe(true);
    expect(iommuRequestsAcs(amd, 'iommu=off intremap=off')).toBe(false);
    expect(iommuRequestsAcs(amd, 'amd_iommu=off')).toBe(true);
    expect(iommuRequestsAcs({ vendor: 'none' }, 'intel_iommu=on')).toBe(false);
  });
  it('says whether the IOMMU is active and translating', () => {
    expect(iommuBootState(intel, null)).toEqual({ active: true, translates: true });
    expect(iommuBootState(amd, 'iommu=pt')).toEqual({ active: true, translates: false });
    expect(iommuBootState(amd, 'amd_iommu=off')).toEqual({ active: false, translates: false });
    expect(iommuBootState({ vendor: 'intel', platformOptIn: true }, 'intel_iommu=off').active).toBe(false);
  });
});
