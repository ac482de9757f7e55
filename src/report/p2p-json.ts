// The P2P report as JSON, produced in chunks so a machine with millions of pairs streams instead of
// building one giant string. Shape:
//   { "machine": {...}, "kernel": "6.1", "endpoints": [...],
//     "pairs": [{ "provider", "client", "mapType", "distance", "warnings" }, ...],
//     "findings": [...], "evidence": {...} }

import { deviceKind } from '../analysis/device-class.js';
import type { P2pAnalysis } from '../analysis/p2p-analysis.js';
import { type PciFunction, pciIdText } from '../hw/pci.js';

function endpointJson(f: PciFunction) {
  return {
    bdf: f.name,
    kind: deviceKind(f),
    id: pciIdText(f),
    class: `0x${f.classCode.toString(16).padStart(6, '0')}`,
    driver: f.driver,
    hostBridge: f.hostBridge.name,
    numaNode: f.numaNode,
    names: f.osNames,
  };
}

/** JSON text in chunks; join them (or write them in order) for the document. */
export function* p2pJsonChunks(
  a: P2pAnalysis,
  topoClass?: (x: PciFunction, y: PciFunction) => string,
): Generator<string> {
  const m = a.machine;
  const head = {
    machine: {
      name: m.name,
      source: m.source,
      cpu: m.cpu,
      cmdline: m.cmdline,
      iommu: m.iommu,
      hostBridges: m.hostBridges.map((h) => h.name),
      notes: m.notes,
    },
    kernel: a.version,
    endpoints: a.endpoints.map(endpointJson),
  };
  yield `${JSON.stringify(head).slice(0, -1)},"pairs":[`;
  const n = a.endpoints.length;
  let batch: string[] = [];
  let written = false;
  const flush = (): string => {
    const text = (written ? ',' : '') + batch.join(',');
    written = true;
    batch = [];
    return text;
  };
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const r = a.pair(i, j);
      const o: Record<string, unknown> = {
        provider: r.provider.name,
        client: r.client.name,
        mapType: r.mapType,
        distance: r.distance,
        warnings: r.warnings,
      };
      if (topoClass) o.class = topoClass(r.provider, r.client);
      batch.push(JSON.stringify(o));
      if (batch.length >= 4096) yield flush();
    }
  }
  if (batch.length) yield flush();
  yield `],"findings":${JSON.stringify(a.findings)},"evidence":${JSON.stringify(a.evidence)}}\n`;
}
