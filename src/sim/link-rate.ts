// Per-direction data rate of a PCIe link, from its generation and width.
//
// Mirrors the kernel's `PCIE_SPEED2MBS_ENC` (drivers/pci/pci.h, used by `pcie_bandwidth_available`)
// for the line-encoding step, then goes further than the kernel does: it also takes off the
// transaction- and data-link-layer overhead, so the result is the payload rate a long DMA stream sees.
//
//   signalling rate  GT/s x lanes / 8                      (Gen4 x16: 32 GB/s)
//     - line encoding 8b/10b, 128b/130b, or flit 242/256  -> "raw" (Gen4 x16: 31.5 GB/s; what
//                                                            `lspci`-style tools and the kernel quote)
//     - per-TLP header, framing, sequence number, LCRC
//     - DLLP share (ACK and UpdateFC)                      -> "effective" (Gen4 x16, MPS 256: 28.4 GB/s)
//
// Units: 1 GB/s (10^9 bytes per second) is exactly 1 byte per ns, the flow model's capacity unit.

export type PcieGen = 1 | 2 | 3 | 4 | 5 | 6;

/** Signalling rate per lane in GT/s, by generation (PCIe Base Spec, table of data rates). */
export const PCIE_GTS: Readonly<Record<PcieGen, number>> = { 1: 2.5, 2: 5, 3: 8, 4: 16, 5: 32, 6: 64 };

/**
 * Line-code efficiency. Gen1/2 send every byte as a 10-bit symbol (8b/10b). Gen3-5 send 128-bit
 * blocks with a 2-bit sync header (128b/130b). Gen6 (PAM4, flit mode only) sends 256-byte flits of
 * which 8 bytes are CRC and 6 bytes FEC, leaving 242 (236 TLP + 6 DLP) for the link layers.
 * The kernel's PCIE_SPEED2MBS_ENC counts 64 GT/s as 1/1 (no line code; since v6.8): the flit's
 * CRC and FEC are charged here instead, which is where they cost bandwidth.
 */
export const ENCODING_EFFICIENCY: Readonly<Record<PcieGen, number>> = {
  1: 8 / 10,
  2: 8 / 10,
  3: 128 / 130,
  4: 128 / 130,
  5: 128 / 130,
  6: 242 / 256,
};

/**
 * Bytes of per-TLP framing around the header in non-flit mode: Gen1/2 put STP and END symbols (1 B
 * each) around a 2-byte sequence number field and the 4-byte LCRC; Gen3-5 replace STP+sequence by a
 * 4-byte STP token (which carries the sequence number) and drop END, plus the 4-byte LCRC. Both come
 * to 8 bytes. In flit mode (Gen6) the sequence number and CRC belong to the flit, so 0.
 */
export const TLP_FRAMING_BYTES = 8;

/**
 * Bytes on the wire of one DLLP: 6 (type, payload, 16-bit CRC) plus 2 of framing (SDP + END symbols
 * for 8b/10b, a 2-byte SDP token for 128b/130b).
 */
export const DLLP_WIRE_BYTES = 8;

/**
 * DLLPs charged per TLP: one Ack and one UpdateFC for every 4 TLPs (receivers coalesce both; 4 is our
 * assumption, not a spec figure). These DLLPs travel against the data, so charging them to the data
 * direction is exact for symmetric two-way traffic and understates a one-way stream by ~1.4 %: a
 * conservative choice. In flit mode DLLP content rides in each flit's 6 DLP bytes instead.
 */
export const DLLPS_PER_TLP = 2 / 4;

/** Flit mode: of the 242 link-layer bytes of a flit, 236 carry TLPs and 6 carry DLP (Ack, flow control). */
export const FLIT_TLP_BYTES = 236;
export const FLIT_LINK_BYTES = 242;

/** Default Max_Payload_Size: 256 B is what most root ports and switches negotiate today. */
export const DEFAULT_MPS_BYTES = 256;

/**
 * TLP header: 3 DW (12 B) for 32-bit addresses and completions (CplD), 4 DW (16 B) for 64-bit
 * addresses. The default is a 64-bit memory write (MWr), the common P2P case (BARs above 4 GiB).
 */
export type TlpKind = 'mwr32' | 'mwr64' | 'cpld';
export const TLP_HEADER_BYTES: Readonly<Record<TlpKind, number>> = { mwr32: 12, mwr64: 16, cpld: 12 };

// Neglected on purpose: SKP ordered sets (~0.3 % in 128b/130b), ECRC (off on most systems), and
// completions split at the read completion boundary.

export interface LinkRateOptions {
  /** Max_Payload_Size in bytes (128..4096, power of two). */
  readonly mpsBytes?: number;
  readonly tlp?: TlpKind;
}

export interface LinkRate {
  readonly gen: PcieGen;
  readonly width: number;
  readonly gtsPerLane: number;
  readonly encoding: '8b/10b' | '128b/130b' | 'flit 242/256';
  /** GT/s x width / 8, before any encoding. */
  readonly signallingGBps: number;
  /** After line encoding: the figure usually quoted ("Gen4 x16 = 31.5 GB/s"). */
  readonly rawGBps: number;
  /** Payload bytes per ns (= GB/s) after TLP and DLLP overhead: what the flow model uses. */
  readonly effectiveGBps: number;
  /** effective / raw. */
  readonly packetEfficiency: number;
  readonly mpsBytes: number;
  readonly tlp: TlpKind;
}

const encodingName = (gen: PcieGen): LinkRate['encoding'] =>
  gen <= 2 ? '8b/10b' : gen <= 5 ? '128b/130b' : 'flit 242/256';

/**
 * Per-direction rate of a PCIe link of generation `gen` and `width` lanes.
 * Preconditions: width an integer 1..32, MPS a power of two 128..4096; anything else is a bug (throws).
 * @returns the rates; no errno (pure arithmetic).
 */
export function pcieLinkRate(gen: PcieGen, width: number, opts: LinkRateOptions = {}): LinkRate {
  const mpsBytes = opts.mpsBytes ?? DEFAULT_MPS_BYTES;
  const tlp = opts.tlp ?? 'mwr64';
  if (!Number.isInteger(width) || width < 1 || width > 32) throw new RangeError(`bad link width x${width}`);
  if (!(mpsBytes >= 128 && mpsBytes <= 4096 && (mpsBytes & (mpsBytes - 1)) === 0))
    throw new RangeError(`bad MPS ${mpsBytes}`);
  const gtsPerLane = PCIE_GTS[gen];
  if (gtsPerLane === undefined) throw new RangeError(`bad PCIe generation ${gen}`);
  const signallingGBps = (gtsPerLane * width) / 8;
  const rawGBps = signallingGBps * ENCODING_EFFICIENCY[gen];
  const header = TLP_HEADER_BYTES[tlp];
  const packetEfficiency =
    gen === 6
      ? (FLIT_TLP_BYTES / FLIT_LINK_BYTES) * (mpsBytes / (mpsBytes + header))
      : mpsBytes / (mpsBytes + header + TLP_FRAMING_BYTES + DLLPS_PER_TLP * DLLP_WIRE_BYTES);
  return {
    gen,
    width,
    gtsPerLane,
    encoding: encodingName(gen),
    signallingGBps,
    rawGBps,
    effectiveGBps: rawGBps * packetEfficiency,
    packetEfficiency,
    mpsBytes,
    tlp,
  };
}

/**
 * Generation for a link speed in GT/s as sysfs reports it (2.5, 5, 8, 16, 32, 64).
 * @returns the generation, or null for a speed no generation has; no errno.
 */
export function pcieGenFromGts(speedGts: number): PcieGen | null {
  for (const g of [1, 2, 3, 4, 5, 6] as const) if (PCIE_GTS[g] === speedGts) return g;
  return null;
}

/**
 * The kernel's `PCIE_SPEED2MBS_ENC`: Mb/s per lane after line encoding, with its integer arithmetic
 * (so 8 GT/s gives 7876, not 7876.9). 0 for an unknown speed, as the kernel returns.
 * @returns Mb/s per lane; no errno.
 */
export function pcieSpeed2MbsEnc(speedGts: number): number {
  switch (pcieGenFromGts(speedGts)) {
    case 6:
      return 64000;
    case 5:
      return Math.trunc((32000 * 128) / 130);
    case 4:
      return Math.trunc((16000 * 128) / 130);
    case 3:
      return Math.trunc((8000 * 128) / 130);
    case 2:
      return (5000 * 8) / 10;
    case 1:
      return (2500 * 8) / 10;
    default:
      return 0;
  }
}

/**
 * One line for reports.
 * @returns e.g. "Gen4 x16: raw 31.5 GB/s, effective 28.4 GB/s (MPS 256, mwr64)"; no errno.
 */
export function describeLinkRate(r: LinkRate): string {
  return `Gen${r.gen} x${r.width}: raw ${r.rawGBps.toFixed(1)} GB/s, effective ${r.effectiveGBps.toFixed(1)} GB/s (MPS ${r.mpsBytes}, ${r.tlp})`;
}
