// The design of a machine file as a tree of functions: what layout.ts produces and bars.ts and
// build.ts consume. A function here has its address and the document entries that describe it.

import { formatBdf } from '../../hw/bdf.js';
import type { PciePortType } from '../../hw/pci-regs.js';
import type { DocPath } from './parse.js';
import type {
  AcsDoc,
  BarDoc,
  DeviceDoc,
  DownstreamPortDoc,
  HostBridgeDoc,
  LinkDoc,
  SriovDoc,
} from './schema.js';
import type { IdPair } from './values.js';

export type Role =
  | 'host-bridge'
  | 'root-port'
  | 'upstream-port'
  | 'downstream-port'
  | 'pci-bridge'
  | 'endpoint';

export type BusKind = 'root' | 'link' | 'internal' | 'conventional';

/** What to put on a bridge's secondary bus once its number is known. */
export type Below =
  | {
      readonly kind: 'devices';
      readonly entries: readonly DeviceDoc[];
      readonly path: DocPath;
      readonly bus: BusKind;
    }
  | {
      readonly kind: 'ports';
      readonly ports: readonly DownstreamPortDoc[];
      readonly path: DocPath;
      readonly sw: SwitchInfo;
    };

export interface SwitchInfo {
  readonly id: IdPair;
  readonly subsystem: IdPair | undefined;
  readonly revision: number | undefined;
  readonly path: DocPath;
}

/** One function being designed. Fields after the first block are filled in by later passes. */
export interface FnNode {
  readonly path: DocPath;
  readonly role: Role;
  readonly hb: HbNode;
  readonly parent: FnNode | null;
  readonly bus: number;
  readonly devfn: number;
  readonly id: IdPair;
  readonly subsystem: IdPair | null;
  readonly revision: number;
  readonly classCode: number;
  readonly portType: PciePortType | 'none';
  readonly linkDoc: LinkDoc | undefined;
  readonly acsDoc: AcsDoc | undefined;
  readonly barDocs: readonly BarDoc[] | undefined;
  readonly cmb: bigint | undefined;
  readonly vram: bigint | undefined;
  readonly sriov: SriovDoc | undefined;
  readonly driver: string | null | undefined;
  readonly label: string | undefined;
  readonly externalFacing: boolean;
  readonly explicitSecondary: number | undefined;
  readonly below: Below | null;
  multifunction: boolean;
  secondary: number | null;
  subordinate: number | null;
  readonly children: FnNode[];
}

export interface HbNode {
  readonly path: DocPath;
  readonly doc: HostBridgeDoc;
  readonly index: number;
  readonly domain: number;
  readonly rootBus: number;
  subordinate: number;
  readonly functions: FnNode[];
}

export interface Problem {
  readonly path: DocPath;
  readonly key?: string | undefined;
  readonly message: string;
}

export const hx2 = (n: number): string => n.toString(16).padStart(2, '0');

/** `pci_name()` of a designed function. */
export const fnName = (f: Pick<FnNode, 'hb' | 'bus' | 'devfn'>): string =>
  formatBdf({ domain: f.hb.domain, bus: f.bus, devfn: f.devfn });

export const pathName = (x: { path: DocPath }): string =>
  x.path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');

/** Every function of a host bridge, parents before children. */
export function* walkFunctions(hb: HbNode): Generator<FnNode> {
  const stack = [...hb.functions].reverse();
  for (let f = stack.pop(); f; f = stack.pop()) {
    yield f;
    for (let i = f.children.length - 1; i >= 0; i--) stack.push(f.children[i]!);
  }
}
