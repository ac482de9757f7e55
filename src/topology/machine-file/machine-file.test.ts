import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isEndpoint, type Machine, type PciFunction } from '../../hw/pci.js';
import { decodeConfig } from '../../hw/pci-config.js';
import { isTopologyError } from '../errors.js';
import {
  DEFAULT_BUILTIN,
  listBuiltinMachines,
  loadBuiltinMachine,
  loadMachineFile,
  MachineFileError,
  machineFromYaml,
  parseMachineYaml,
} from './index.js';

/** The error a machine-file text gives, as its issue lines. */
function problems(text: string): string[] {
  try {
    parseMachineYaml(text, 'x.yaml');
  } catch (e) {
    if (!(e instanceof MachineFileError)) throw e;
    expect(isTopologyError(e)).toBe(true);
    return e.issues.map((i) => `${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ''}${i.message}`);
  }
  throw new Error('expected the machine file to be refused');
}

const MINIMAL = `
hostBridges:
  - hostBridgeId: 8086:2020
    devices:
      - kind: root-port
        id: 8086:2030
        devices:
          - { kind: endpoint, id: 144d:a824, class: nvme }
`;

describe('machine file errors (file:line:col: path: what)', () => {
  it('names a wrong type with its position', () => {
    expect(problems('hostBridges:\n  - numaNode: "zero"\n')).toEqual([
      '2:15: hostBridges[0].numaNode: expected number, got "zero"',
    ]);
  });

  it('names an unknown key at the key itself', () => {
    expect(problems(`${MINIMAL}        colour: red\n`)).toEqual([
      '9:9: hostBridges[0].devices[0].colour: unknown key "colour"',
    ]);
  });

  it('explains a malformed ID and an unknown ACS bit', () => {
    const text = `hostBridges:
  - devices:
      - kind: root-port
        id: 8086-2030
        acs: { cap: default, ctrl: [SV, RX] }
`;
    expect(problems(text)).toEqual([
      '4:13: hostBridges[0].devices[0].id: "8086-2030" is not a vendor:device ID pair (write 4 hex digits each, e.g. "8086:2030")',
      '5:41: hostBridges[0].devices[0].acs.ctrl[1]: unknown ACS bit "RX" (expected SV, TB, RR, CR, UF, EC, DT)',
    ]);
  });

  it('refuses an unknown kind and a missing required key', () => {
    expect(
      problems(
        'hostBridges:\n  - devices:\n      - { kind: gizmo }\n      - { kind: endpoint, class: gpu }\n',
      ),
    ).toEqual([
      '3:17: hostBridges[0].devices[0].kind: unknown kind "gizmo" (expected endpoint, root-port, switch, pci-bridge)',
      '4:9: hostBridges[0].devices[1].id: a vendor:device ID is required',
    ]);
    expect(problems('name: x\n')).toEqual(['1:1: missing required key "hostBridges"']);
  });

  it('finds duplicate addresses, naming both entries', () => {
    const text = `hostBridges:
  - hostBridgeId: 8086:2020
    devices:
      - { kind: endpoint, slot: 0, id: 8086:2021, class: dma }
      - { kind: endpoint, slot: 4, id: 8086:2021, class: dma, functions: 2 }
      - { kind: endpoint, slot: 4, function: 1, id: 8086:2021, class: dma }
`;
    expect(problems(text)).toEqual([
      '4:9: hostBridges[0].devices[0]: duplicate address 0000:00:00.0: the host-bridge function of hostBridges[0] is there already',
      '6:9: hostBridges[0].devices[2]: duplicate address 0000:00:04.1: hostBridges[0].devices[1] is there already',
    ]);
  });

  it('reports YAML syntax errors with their position', () => {
    const [p] = problems('hostBridges:\n  - devices: [\n      { kind: endpoint\n');
    expect(p).toMatch(/^\d+:\d+: YAML syntax error: /);
    expect(problems('a: 1\na: 2\nhostBridges: []\n')[0]).toMatch(
      /^2:1: YAML syntax error: Map keys must be unique/,
    );
  });

  it('checks designs: ACS control within the capability, device placement, bus numbers, BAR sizes', () => {
    const acs = `hostBridges:
  - devices:
      - kind: root-port
        id: 8086:2030
        acs: { cap: [SV, RR], ctrl: [SV, CR] }
`;
    expect(problems(acs)).toEqual([
      '5:31: hostBridges[0].devices[0].acs.ctrl: control bit(s) CR are not in the capability (SV, RR)',
    ]);
    const link = `${MINIMAL}          - { kind: endpoint, slot: 3, id: 144d:a824, class: nvme }\n`;
    expect(problems(link)[0]).toContain('a PCIe link holds device 0 only');
    expect(
      problems('hostBridges:\n  - devices:\n      - { kind: switch, id: 10b5:9797, downstream: [{}] }\n')[0],
    ).toContain('a switch hangs below a root port');
    const buses = `hostBridges:\n  - bus: 0xfe\n    devices:\n${'      - { kind: root-port, id: 8086:2030 }\n'.repeat(3)}`;
    expect(problems(buses)).toEqual([
      '5:9: hostBridges[0].devices[1]: bus numbers run out (past ff) here: the tree is too deep or wide for one PCI domain',
    ]);
    const bar = `${MINIMAL.replace('class: nvme }', 'class: nvme, bars: [{ size: 3000 }] }')}`;
    expect(problems(bar)).toEqual([
      '8:66: hostBridges[0].devices[0].devices[0].bars[0]: BAR size 0xbb8 is not a power of two of at least 16 bytes',
    ]);
  });

  it('reports a file that cannot be read as a TopologyError', () => {
    expect(() => loadMachineFile('/nonexistent/x.yaml')).toThrow(/no such machine file/);
  });
});

/** Bridge windows from config bytes (bus addresses), as the kernel's pci_read_bridge_windows() reads them. */
function windows(f: PciFunction): { lo: bigint; hi: bigint }[] {
  const c = new DataView(f.config!.buffer);
  const w16 = (o: number) => BigInt(c.getUint16(o, true));
  const mem = { lo: (w16(0x20) & 0xfff0n) << 16n, hi: ((w16(0x22) & 0xfff0n) << 16n) | 0xfffffn };
  const hiBase = BigInt(c.getUint32(0x28, true));
  const hiLimit = BigInt(c.getUint32(0x2c, true));
  const pf = {
    lo: (hiBase << 32n) | ((w16(0x24) & 0xfff0n) << 16n),
    hi: (hiLimit << 32n) | ((w16(0x26) & 0xfff0n) << 16n) | 0xfffffn,
  };
  return [mem, pf].filter((w) => w.lo <= w.hi);
}

function checkMachine(m: Machine): void {
  const bars = m.functions.flatMap((f) => f.bars.map((b) => ({ f, b })));
  bars.sort((x, y) => (x.b.cpuStart < y.b.cpuStart ? -1 : 1));
  for (const [i, { f, b }] of bars.entries()) {
    // Natural alignment, no overlap, and routed by every bridge above.
    expect(b.busStart % b.size, `${f.name} BAR ${b.index}`).toBe(0n);
    const prev = bars[i - 1];
    if (prev)
      expect(prev.b.cpuStart + prev.b.size <= b.cpuStart, `${f.name} overlaps ${prev.f.name}`).toBe(true);
    for (let up = f.bridge; up; up = up.bridge) {
      const inside = windows(up).some((w) => b.busStart >= w.lo && b.busStart + b.size - 1n <= w.hi);
      expect(inside, `${f.name} BAR ${b.index} outside the windows of ${up.name}`).toBe(true);
    }
  }
  for (const f of m.functions) {
    const d = decodeConfig(f.config!);
    expect(d.acs).toEqual(f.acs);
    expect([d.vendor, d.device, d.classCode, d.secondaryBus, d.subordinateBus]).toEqual([
      f.vendor,
      f.device,
      f.classCode,
      f.secondaryBus,
      f.subordinateBus,
    ]);
    if (f.bridge) {
      expect(f.addr.bus).toBe(f.bridge.secondaryBus);
      expect(f.secondaryBus ?? f.addr.bus).toBeLessThanOrEqual(f.bridge.subordinateBus!);
    }
  }
}

describe('built-in machines', () => {
  const list = listBuiltinMachines();
  it('lists the shipped machines, the default first among equals', () => {
    expect(list.map((m) => m.name)).toEqual(
      expect.arrayContaining(['xeon-2s-switches', 'epyc-gpu', 'workstation', 'qemu-switch-iommu']),
    );
    expect(list.filter((m) => m.isDefault).map((m) => m.name)).toEqual([DEFAULT_BUILTIN]);
    for (const m of list) expect(m.description.length).toBeGreaterThan(20);
  });

  const endpoints: Record<string, number> = {
    'xeon-2s-switches': 32,
    'epyc-gpu': 25,
    workstation: 6,
    'qemu-switch-iommu': 10,
  };
  for (const name of Object.keys(endpoints)) {
    it(`${name} loads with consistent config bytes, buses and BARs`, () => {
      const m = loadBuiltinMachine(name);
      expect(m.source).toEqual({ kind: 'builtin', path: `machines/${name}.yaml` });
      expect(m.functions.filter(isEndpoint)).toHaveLength(endpoints[name]!);
      checkMachine(m);
    });
  }

  it('resolves "default" and refuses unknown names', () => {
    expect(loadBuiltinMachine('default').name).toBe('xeon-2s-switches');
    expect(() => loadBuiltinMachine('nope')).toThrow(/built-in: .*xeon-2s-switches/);
  });

  it('programs ACS at boot: redirect on the Xeon switch ports except those the command line names', () => {
    const { machine, bootLog } = machineFromYaml(
      readFileSync(list.find((m) => m.isDefault)!.path, 'utf8'),
      'xeon.yaml',
      { kernel: '6.1' },
    );
    const ctrl = (n: string) => {
      const a = machine.byName.get(n)!.acs;
      return a.state === 'present' ? a.ctrl : -1;
    };
    expect([ctrl('0000:19:08.0'), ctrl('0000:3c:08.0'), ctrl('0000:17:00.0')]).toEqual([
      0x0011, 0x001d, 0x001d,
    ]);
    expect(bootLog.map((l) => l.text)).toContain('pci 0000:19:0a.0: disabled ACS redirect');
    expect(machine.notes).toContain('kernel: pci 0000:19:08.0: disabled ACS redirect');
    expect(machine.iommu).toBe(true);
    // Socket 1's CSTACK has no 00.0 function: its first device is CBDMA at 80:04.0.
    expect(machine.hostBridges.find((h) => h.rootBus === 0x80)!.rootFunctions[0]!.name).toBe('0000:80:04.0');
    expect(machine.byName.get('0000:3f:00.0')!.hints?.cmb).toEqual({ bar: 2, size: 64n << 20n });
  });
});
