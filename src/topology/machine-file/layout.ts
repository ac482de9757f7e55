// Turn a validated machine-file document into a tree of functions with addresses: device and function
// numbers on each bus, and bus numbers assigned depth-first in scan order, as firmware does:
//
//   root bus 17 (host bridge)              scan order: every function of a bus in devfn order,
//     17:00.0 root port  sec 18 sub 1c      then each bridge's subtree in devfn order; a bridge
//       18:00.0 switch upstream  sec 19 sub 1c   takes the next free bus number as its secondary
//         19:00.0 downstream  sec 1a            bus and, once its subtree is numbered, the last one
//         19:01.0 downstream  sec 1b            used as its subordinate bus.
//         19:02.0 downstream  sec 1c
//
// A bus below a PCIe root or downstream port is a link: it holds device 0 only (its functions fill
// 0..7). Root buses, switch-internal buses and conventional PCI buses hold devices at any slot.

import {
  type BusKind,
  type FnNode,
  fnName,
  type HbNode,
  hx2,
  type Problem,
  pathName,
  type Role,
  type SwitchInfo,
} from './nodes.js';
import type { DocPath } from './parse.js';
import type { DeviceDoc, DownstreamPortDoc, MachineFileDoc } from './schema.js';
import type { IdPair } from './values.js';

/** One device entry to place on a bus, before its functions get numbers. */
interface Entry {
  readonly path: DocPath;
  readonly doc: DeviceDoc | DownstreamPortDoc;
  readonly nfn: number;
  slot: number;
  fn: number;
}

class Layout {
  readonly problems: Problem[] = [];
  readonly hbs: HbNode[] = [];
  private readonly used = new Map<number, FnNode>();
  private next = 0;

  readonly doc: MachineFileDoc;

  constructor(doc: MachineFileDoc) {
    this.doc = doc;
  }

  run(): void {
    const lastBus = new Map<number, number>();
    for (const [index, h] of this.doc.hostBridges.entries()) {
      const domain = h.domain ?? 0;
      const prev = lastBus.get(domain);
      const rootBus = h.bus ?? (prev === undefined ? 0 : prev + 1);
      const hb: HbNode = {
        path: ['hostBridges', index],
        doc: h,
        index,
        domain,
        rootBus,
        subordinate: rootBus,
        functions: [],
      };
      this.hbs.push(hb);
      if (rootBus > 0xff) {
        this.problem(hb.path, 'bus numbers run out (past ff) before this host bridge');
        continue;
      }
      this.next = rootBus;
      const onRoot = this.placeBus(hb, null, rootBus, 'root', h.devices ?? [], [...hb.path, 'devices']);
      hb.functions.push(...onRoot);
      this.numberSubtrees(onRoot);
      hb.subordinate = this.next;
      lastBus.set(domain, Math.max(prev ?? -1, this.next));
    }
    this.checkBusRanges();
  }

  problem(path: DocPath, message: string, key?: string): void {
    this.problems.push({ path, key, message });
  }

  /** Number the secondary buses of bridges depth-first, in devfn order. */
  private numberSubtrees(fns: FnNode[]): void {
    for (const f of [...fns].sort((a, b) => a.devfn - b.devfn)) {
      if (!f.below) continue;
      const want = f.explicitSecondary;
      if (want !== undefined && want <= this.next) {
        this.problem(
          f.path,
          `secondaryBus ${hx2(want)} is not free: bus numbers up to ${hx2(this.next)} are taken`,
        );
      }
      const sec = want !== undefined && want > this.next ? want : this.next + 1;
      if (sec > 0xff) {
        this.problem(
          f.path,
          'bus numbers run out (past ff) here: the tree is too deep or wide for one PCI domain',
        );
        return;
      }
      this.next = sec;
      f.secondary = sec;
      const kids =
        f.below.kind === 'ports'
          ? this.placePorts(f, sec, f.below.ports, f.below.path, f.below.sw)
          : this.placeBus(f.hb, f, sec, f.below.bus, f.below.entries, f.below.path);
      f.children.push(...kids);
      this.numberSubtrees(kids);
      f.subordinate = this.next;
    }
  }

  /** Host bridges of one domain must own disjoint bus ranges. */
  private checkBusRanges(): void {
    this.hbs.forEach((a, i) => {
      for (const b of this.hbs.slice(0, i)) {
        if (a.domain === b.domain && a.rootBus <= b.subordinate && b.rootBus <= a.subordinate) {
          this.problem(
            a.path,
            `buses ${hx2(a.rootBus)}-${hx2(a.subordinate)} overlap those of host bridge ${pathName(b)} (${hx2(b.rootBus)}-${hx2(b.subordinate)})`,
          );
        }
      }
    });
  }

  /** Give every entry of a bus its slot and function numbers. */
  private assign(entries: Entry[], bus: BusKind, firstSlot: number): void {
    const taken = new Map<number, Set<number>>();
    const fnsOf = (slot: number): Set<number> => taken.get(slot) ?? taken.set(slot, new Set()).get(slot)!;
    for (const e of entries) {
      if (bus === 'link' && e.doc.slot !== undefined && e.doc.slot !== 0) {
        this.problem(
          e.path,
          'a PCIe link holds device 0 only: remove "slot" (functions 0..7 share slot 0)',
          'slot',
        );
      }
      if (e.doc.slot !== undefined || bus === 'link') fnsOf(e.doc.slot ?? 0);
    }
    let autoSlot = firstSlot;
    for (const e of entries) {
      if (bus === 'link' || e.doc.slot !== undefined) {
        e.slot = bus === 'link' ? 0 : e.doc.slot!;
      } else {
        while (taken.has(autoSlot)) autoSlot++;
        e.slot = autoSlot;
      }
      const used = fnsOf(e.slot);
      let fn = e.doc.function ?? 0;
      if (e.doc.function === undefined) while (used.has(fn)) fn++;
      e.fn = fn;
      for (let k = fn; k < fn + e.nfn; k++) {
        // A clash with a function already there is reported by fn(), which can name the other one.
        if (k > 7) this.problem(e.path, `no room for function ${k}: a device has functions 0..7`);
        used.add(k);
      }
      if (e.slot > 0x1f) this.problem(e.path, 'no free device number left on this bus (0..1f)');
    }
  }

  private placeBus(
    hb: HbNode,
    parent: FnNode | null,
    bus: number,
    kind: BusKind,
    docs: readonly DeviceDoc[],
    path: DocPath,
  ): FnNode[] {
    const entries: Entry[] = docs.map((d, i) => ({
      path: [...path, i],
      doc: d,
      nfn: d.kind === 'endpoint' ? (d.functions ?? 1) : 1,
      slot: 0,
      fn: 0,
    }));
    const out: FnNode[] = [];
    if (kind === 'root' && hb.doc.hostBridgeId) {
      out.push(
        this.fn(hb, null, bus, 0, hb.path, 'host-bridge', { id: hb.doc.hostBridgeId, classCode: 0x060000 }),
      );
    }
    this.assign(entries, kind, out.length > 0 ? 1 : 0);
    for (const e of entries) out.push(...this.makeFunctions(hb, parent, bus, kind, e));
    const slots = new Map<number, FnNode[]>();
    for (const f of out) slots.set(f.devfn >> 3, [...(slots.get(f.devfn >> 3) ?? []), f]);
    for (const group of slots.values()) if (group.length > 1) for (const f of group) f.multifunction = true;
    return out;
  }

  private placePorts(
    usp: FnNode,
    bus: number,
    ports: readonly DownstreamPortDoc[],
    path: DocPath,
    sw: SwitchInfo,
  ): FnNode[] {
    const entries: Entry[] = ports.map((d, i) => ({ path: [...path, i], doc: d, nfn: 1, slot: 0, fn: 0 }));
    this.assign(entries, 'internal', 0);
    return entries.map((e) => {
      const d = e.doc as DownstreamPortDoc;
      return this.fn(usp.hb, usp, bus, (e.slot << 3) | e.fn, e.path, 'downstream-port', {
        id: d.id ?? sw.id,
        subsystem: sw.subsystem,
        revision: sw.revision,
        classCode: 0x060400,
        portType: 'downstream-port',
        linkDoc: d.link,
        acsDoc: d.acs,
        driver: d.driver,
        label: d.name,
        externalFacing: d.externalFacing ?? false,
        explicitSecondary: d.secondaryBus,
        below: { kind: 'devices', entries: d.devices ?? [], path: [...e.path, 'devices'], bus: 'link' },
      });
    });
  }

  private makeFunctions(hb: HbNode, parent: FnNode | null, bus: number, kind: BusKind, e: Entry): FnNode[] {
    const d = e.doc as DeviceDoc;
    const devfn = (e.slot << 3) | e.fn;
    const common = {
      id: d.id,
      subsystem: d.subsystem,
      revision: d.revision,
      driver: d.driver,
      label: d.name,
    };
    if (d.kind === 'endpoint') {
      const conventional = kind === 'conventional' || (d.conventional ?? false);
      if (kind === 'conventional' && d.conventional === false) {
        this.problem(
          e.path,
          'a device on a conventional PCI bus (below a PCI bridge) cannot be PCIe',
          'conventional',
        );
      }
      const portType = conventional ? 'none' : kind === 'root' ? 'rc-integrated-endpoint' : 'endpoint';
      return Array.from({ length: e.nfn }, (_, k) =>
        this.fn(hb, parent, bus, devfn + k, e.path, 'endpoint', {
          ...common,
          label: d.name && e.nfn > 1 ? `${d.name}.${k}` : d.name,
          classCode: d.class,
          portType,
          linkDoc: d.link,
          acsDoc: d.acs,
          barDocs: d.bars,
          cmb: d.cmb,
          vram: d.vram,
          sriov: d.sriov,
        }),
      );
    }
    if (d.kind === 'root-port') {
      if (kind !== 'root')
        this.problem(e.path, "a root port sits on a root bus: list it in a host bridge's devices");
      return [
        this.fn(hb, parent, bus, devfn, e.path, 'root-port', {
          ...common,
          classCode: 0x060400,
          portType: 'root-port',
          linkDoc: d.link,
          acsDoc: d.acs,
          barDocs: d.bars,
          externalFacing: d.externalFacing ?? false,
          explicitSecondary: d.secondaryBus,
          below: { kind: 'devices', entries: d.devices ?? [], path: [...e.path, 'devices'], bus: 'link' },
        }),
      ];
    }
    if (d.kind === 'switch') {
      if (kind !== 'link')
        this.problem(e.path, 'a switch hangs below a root port or a switch downstream port');
      const up = d.upstream;
      const sw = { id: d.id, subsystem: d.subsystem, revision: d.revision, path: e.path };
      return [
        this.fn(hb, parent, bus, devfn, e.path, 'upstream-port', {
          ...common,
          id: up?.id ?? d.id,
          classCode: 0x060400,
          portType: 'upstream-port',
          linkDoc: up?.link,
          acsDoc: up?.acs,
          barDocs: up?.bars,
          explicitSecondary: up?.secondaryBus,
          below: { kind: 'ports', ports: d.downstream, path: [...e.path, 'downstream'], sw },
        }),
      ];
    }
    if (kind === 'conventional' && d.acs !== undefined && d.acs !== 'none') {
      this.problem(e.path, 'a conventional PCI-PCI bridge has no ACS capability', 'acs');
    }
    return [
      this.fn(hb, parent, bus, devfn, e.path, 'pci-bridge', {
        ...common,
        classCode: 0x060400,
        portType: kind === 'conventional' ? 'none' : 'pcie-to-pci-bridge',
        linkDoc: d.link,
        acsDoc: d.acs,
        explicitSecondary: d.secondaryBus,
        below: {
          kind: 'devices',
          entries: d.devices ?? [],
          path: [...e.path, 'devices'],
          bus: 'conventional',
        },
      }),
    ];
  }

  private fn(
    hb: HbNode,
    parent: FnNode | null,
    bus: number,
    devfn: number,
    path: DocPath,
    role: Role,
    o: Partial<Omit<FnNode, 'subsystem' | 'revision'>> & {
      id: IdPair;
      classCode: number;
      subsystem?: IdPair | undefined;
      revision?: number | undefined;
    },
  ): FnNode {
    const f: FnNode = {
      path,
      role,
      hb,
      parent,
      bus,
      devfn,
      id: o.id,
      subsystem: o.subsystem ?? null,
      revision: o.revision ?? 0,
      classCode: o.classCode,
      portType: o.portType ?? 'none',
      linkDoc: o.linkDoc,
      acsDoc: o.acsDoc,
      barDocs: o.barDocs,
      cmb: o.cmb,
      vram: o.vram,
      sriov: o.sriov,
      driver: o.driver,
      label: o.label,
      externalFacing: o.externalFacing ?? false,
      explicitSecondary: o.explicitSecondary,
      below: o.below ?? null,
      multifunction: false,
      secondary: null,
      subordinate: null,
      children: [],
    };
    const key = (hb.domain * 0x100 + bus) * 0x100 + devfn;
    const clash = this.used.get(key);
    if (clash) {
      const other =
        clash.role === 'host-bridge' ? `the host-bridge function of ${pathName(clash)}` : pathName(clash);
      this.problem(path, `duplicate address ${fnName(f)}: ${other} is there already`);
    } else {
      this.used.set(key, f);
    }
    return f;
  }
}

/**
 * Lay out every host bridge of the document: functions with bus/device/function numbers and bus
 * ranges. Problems (duplicate addresses, exhausted bus numbers, misplaced devices) are collected.
 * @returns the host bridges in document order and the problems found.
 */
export function layoutMachine(doc: MachineFileDoc): { hbs: HbNode[]; problems: Problem[] } {
  const l = new Layout(doc);
  l.run();
  return { hbs: l.hbs, problems: l.problems };
}
