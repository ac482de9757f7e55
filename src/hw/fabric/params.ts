// The numbers of the fabric that a machine description does not give: capacities and latencies of
// root complexes, switches, memory controllers and socket links, and link rates for ports whose link
// was not reported. Mirrors no kernel file. Every default is a documented choice, overridable per
// fabric (FabricOptions.params).
//
// Units: capacities in GB/s (= bytes per ns, the flow model's unit), latencies in ns, one way.
//
// | what                        | default | why                                                           |
// | --------------------------- | ------- | ------------------------------------------------------------- |
// | PCIe link hop latency       | 100     | PHY + data-link layer of both ports, one direction            |
// | switch crossbar             | 512 /150| PEX/Broadcom switches are non-blocking; ~150 ns cut-through   |
// | root complex crossbar       | 128 /200| sized for several x16 ports both ways; IIO/NBIO traversal     |
// | memory controller (node)    | 128 / 80| 8 x DDR4-3200 is 204.8 GB/s peak, ~60 % sustained for DMA     |
// | socket link, per direction  | 62.4/130| 3 x UPI at 10.4 GT/s (20.8 GB/s each); xGMI is similar        |
// | IOMMU walk, per level read  | 90      | one DRAM access per page-table level on an IOTLB miss         |
// | unknown root/downstream link| Gen3 x16| the most common server slot; effective rate via link-rate.ts  |
// | conventional PCI bus        | 0.133   | 32-bit, 33 MHz PCI (133 MB/s), shared by everything on it     |
// | RAM per NUMA node           | 64 GiB  | sparse: costs nothing until written                           |

import { GiB } from '../addr.js';

export interface FabricParams {
  readonly linkLatencyNs: number;
  readonly switchGBps: number;
  readonly switchLatencyNs: number;
  readonly rootComplexGBps: number;
  readonly rootComplexLatencyNs: number;
  readonly memoryGBps: number;
  readonly memoryLatencyNs: number;
  readonly socketLinkGBps: number;
  readonly socketLinkLatencyNs: number;
  readonly iommuWalkLevelNs: number;
  /** Generation and width assumed for a PCIe link nobody reported. */
  readonly defaultLink: { readonly gen: 1 | 2 | 3 | 4 | 5 | 6; readonly width: number };
  readonly conventionalPciGBps: number;
  readonly ramBytesPerNode: bigint;
  /** IOTLB geometry of each IOMMU unit. */
  readonly iotlbEntries: number;
  readonly iotlbWays: number;
}

export const DEFAULT_FABRIC_PARAMS: FabricParams = {
  linkLatencyNs: 100,
  switchGBps: 512,
  switchLatencyNs: 150,
  rootComplexGBps: 128,
  rootComplexLatencyNs: 200,
  memoryGBps: 128,
  memoryLatencyNs: 80,
  socketLinkGBps: 62.4,
  socketLinkLatencyNs: 130,
  iommuWalkLevelNs: 90,
  defaultLink: { gen: 3, width: 16 },
  conventionalPciGBps: 0.133,
  ramBytesPerNode: 64n * GiB,
  iotlbEntries: 512,
  iotlbWays: 8,
};
