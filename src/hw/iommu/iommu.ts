// One simulated IOMMU unit: translation domains (each with an id and, for paging domains, an I/O page
// table), the attachment of PCI requesters to domains, one shared IOTLB, and a fault log.
//
// It is the hardware half of what the kernel drives through drivers/iommu/ (the context/stream table
// entry that binds a requester to a domain, the walker, the TLB, the event queue); the software half is
// src/kernel/iommu. A device DMA asks `translate()`:
//
//   requester --attach table--> domain --identity--> phys = iova
//                                  |---blocked------> fault (no-domain)
//                                  `---paging-------> IOTLB hit? ---no--> walk page table --> fill IOTLB
//                                                        |                   `-- not present: fault
//                                                        `-- permission check: fault (permission)
//
// Faults are values: recorded in the log (bounded, like a hardware event queue that overflows) and
// returned; nothing is thrown for a device's bad DMA.

import { type Bytes, bytes, type DmaAddr, dmaAddr, type PhysAddr, physAddr } from '../addr.js';
import { IOTLB_MAX_DOMAIN_ID, Iotlb, type IotlbConfig, type IotlbEntry } from './iotlb.js';
import { IoPageTable, type PgtableMapResult, type PgtableUnmapResult, type PteProt } from './page-table.js';

export type IommuAccess = 'read' | 'write';
export type IommuFaultReason = 'not-present' | 'permission' | 'no-domain';
/** What a domain does with DMA: translate through its page table, pass through, or block everything. */
export type HwDomainType = 'paging' | 'identity' | 'blocked';

export interface IommuFault {
  /** PCI function name of the requester (`pci_name()`, e.g. "0000:03:00.0"). */
  readonly requester: string;
  /** The faulting address (the first byte of the access that could not be translated). */
  readonly iova: DmaAddr;
  readonly access: IommuAccess;
  readonly reason: IommuFaultReason;
  /** Domain the requester is attached to (a blocked domain's id too); null when unattached. */
  readonly domainId: number | null;
}

/** A physically contiguous piece of a translated DMA. */
export interface PhysRange {
  readonly phys: PhysAddr;
  readonly len: Bytes;
}

export interface TranslateCost {
  readonly iotlbHits: number;
  readonly iotlbMisses: number;
  /** Hits on entries whose page-table entry is gone (DMA that lazy invalidation still lets through). */
  readonly staleHits: number;
  /** Page-table entries read by walks for this access: what latency is charged for. */
  readonly walkLevels: number;
}

export type TranslateResult =
  | ({ readonly ok: true; readonly ranges: readonly PhysRange[] } & TranslateCost)
  | ({ readonly ok: false; readonly fault: IommuFault } & TranslateCost);

export interface IommuUnitConfig {
  readonly name: string;
  readonly iotlb: IotlbConfig;
  /** Input address bits of paging domains (default 48). */
  readonly ias?: number;
  /** Output address bits (default 48). */
  readonly oas?: number;
  /** Faults kept in the log; later ones are counted in `faultsDropped` (default 1024). */
  readonly faultLogLimit?: number;
}

interface HwDomain {
  readonly id: number;
  readonly type: HwDomainType;
  readonly pgtable: IoPageTable | null;
}

type Cost = { -readonly [K in keyof TranslateCost]: TranslateCost[K] };

export class IommuUnit {
  readonly name: string;
  readonly iotlb: Iotlb;
  readonly ias: number;
  readonly oas: number;
  /** Recorded faults, oldest first, at most `faultLogLimit`. */
  readonly faults: IommuFault[] = [];
  faultsDropped = 0;
  readonly stats = { translations: 0, walks: 0, walkLevels: 0 };
  private readonly faultLogLimit: number;
  private readonly domains = new Map<number, HwDomain>();
  private readonly attached = new Map<string, number>();
  private readonly freeIds: number[] = [];
  private nextId = 1;

  constructor(cfg: IommuUnitConfig) {
    this.name = cfg.name;
    this.iotlb = new Iotlb(cfg.iotlb);
    this.ias = cfg.ias ?? 48;
    this.oas = cfg.oas ?? 48;
    this.faultLogLimit = cfg.faultLogLimit ?? 1024;
  }

  /** Create a domain; returns its id, or null when the unit's domain ids are exhausted. */
  allocDomain(type: HwDomainType): number | null {
    const id = this.freeIds.pop() ?? (this.nextId <= IOTLB_MAX_DOMAIN_ID ? this.nextId++ : null);
    if (id === null) return null;
    const pgtable =
      type === 'paging'
        ? new IoPageTable({
            ias: this.ias,
            oas: this.oas,
            // Tearing down a table flushes the walk caches for its range at once (tlb_flush_walk).
            onFlushWalk: (iova, size) => this.iotlb.invalidateRange(id, iova, size),
          })
        : null;
    this.domains.set(id, { id, type, pgtable });
    return id;
  }

  /** Destroy a domain. Precondition: no requester attached (the kernel never frees an attached one). */
  freeDomain(id: number): void {
    this.domain(id);
    for (const [req, d] of this.attached) {
      if (d === id) throw new Error(`iommu ${this.name}: freeing domain ${id} still attached to ${req}`);
    }
    this.iotlb.invalidateDomain(id);
    this.domains.delete(id);
    this.freeIds.push(id);
  }

  domainType(id: number): HwDomainType {
    return this.domain(id).type;
  }

  /** The page table of a paging domain (throws for identity/blocked: a caller bug). */
  pageTable(id: number): IoPageTable {
    const d = this.domain(id);
    if (!d.pgtable) throw new Error(`iommu ${this.name}: domain ${id} (${d.type}) has no page table`);
    return d.pgtable;
  }

  /** Point a requester's context entry at a domain (replacing any previous one). */
  attach(requester: string, domainId: number): void {
    this.domain(domainId);
    this.attached.set(requester, domainId);
  }

  /** Clear a requester's context entry: its DMA then faults with 'no-domain'. */
  detach(requester: string): void {
    this.attached.delete(requester);
  }

  attachedDomain(requester: string): number | null {
    return this.attached.get(requester) ?? null;
  }

  /** Install leaves in a paging domain's table (see `IoPageTable.mapPages`). */
  map(
    domainId: number,
    iova: bigint,
    paddr: bigint,
    pgsize: bigint,
    pgcount: number,
    prot: PteProt,
  ): PgtableMapResult {
    return this.pageTable(domainId).mapPages(iova, paddr, pgsize, pgcount, prot);
  }

  /**
   * Clear leaves in a paging domain's table. Cached IOTLB copies stay until invalidated; they are
   * marked stale so a later hit on them is visible.
   */
  unmap(domainId: number, iova: bigint, pgsize: bigint, pgcount: number): PgtableUnmapResult {
    const r = this.pageTable(domainId).unmapPages(iova, pgsize, pgcount);
    if (r.unmappedBytes > 0n) this.iotlb.markStale(domainId, Number(iova), Number(r.unmappedBytes));
    return r;
  }

  /** Software walk of a paging domain; 0 when nothing is mapped. */
  iovaToPhys(domainId: number, iova: bigint): bigint {
    return this.pageTable(domainId).iovaToPhys(iova);
  }

  invalidateRange(domainId: number, iova: bigint, size: bigint): number {
    return this.iotlb.invalidateRange(domainId, Number(iova), Number(size));
  }

  invalidateDomain(domainId: number): number {
    return this.iotlb.invalidateDomain(domainId);
  }

  invalidateAll(): number {
    return this.iotlb.invalidateAll();
  }

  /**
   * Translate a DMA of `len` bytes at `iova` by `requester`: one IOTLB lookup per leaf page touched
   * (a walk on a miss), so a DMA inside one 2 MiB block costs one lookup.
   * @returns the physical ranges (contiguous pieces merged) and the cost, or the fault (also logged);
   *   on a fault nothing of the access is returned.
   */
  translate(requester: string, iova: DmaAddr, len: Bytes, access: IommuAccess): TranslateResult {
    this.stats.translations++;
    const zero = { iotlbHits: 0, iotlbMisses: 0, staleHits: 0, walkLevels: 0 };
    const id = this.attached.get(requester);
    if (id === undefined) return this.fault(requester, iova, access, 'no-domain', null, zero);
    const d = this.domain(id);
    if (d.type === 'blocked') return this.fault(requester, iova, access, 'no-domain', id, zero);
    if (d.type === 'identity')
      return { ok: true, ranges: len > 0n ? [{ phys: physAddr(iova), len }] : [], ...zero };
    return this.translatePaging(requester, d, iova, len, access);
  }

  private translatePaging(
    requester: string,
    d: HwDomain,
    iova: DmaAddr,
    len: Bytes,
    access: IommuAccess,
  ): TranslateResult {
    const cost = { iotlbHits: 0, iotlbMisses: 0, staleHits: 0, walkLevels: 0 };
    const limit = 2 ** this.ias;
    if (iova >= BigInt(limit)) return this.fault(requester, iova, access, 'not-present', d.id, cost);
    const start = Number(iova);
    const end = start + Number(len);
    const physStarts: number[] = [];
    const lens: number[] = [];
    let cur = start;
    while (cur < end) {
      const e = this.lookupOrWalk(d, cur, cost);
      if (typeof e === 'string') return this.fault(requester, dmaAddr(cur), access, e, d.id, cost);
      if (!(access === 'read' ? e.read : e.write)) {
        return this.fault(requester, dmaAddr(cur), access, 'permission', d.id, cost);
      }
      const chunk = Math.min(end - cur, e.iovaBase + 2 ** e.pageShift - cur);
      const phys = e.physBase + (cur - e.iovaBase);
      const last = lens.length - 1;
      if (last >= 0 && physStarts[last]! + lens[last]! === phys) lens[last]! += chunk;
      else {
        physStarts.push(phys);
        lens.push(chunk);
      }
      cur += chunk;
    }
    const ranges = physStarts.map((p, i) => ({ phys: physAddr(p), len: bytes(lens[i]!) }));
    return { ok: true, ranges, ...cost };
  }

  /** The IOTLB entry for `va`, filled by a walk on a miss, or why there is none. */
  private lookupOrWalk(d: HwDomain, va: number, cost: Cost): IotlbEntry | IommuFaultReason {
    if (va >= 2 ** this.ias) return 'not-present';
    const staleBefore = this.iotlb.stats.staleHits;
    const hit = this.iotlb.lookup(d.id, va);
    if (hit) {
      cost.iotlbHits++;
      cost.staleHits += this.iotlb.stats.staleHits - staleBefore;
      return hit;
    }
    cost.iotlbMisses++;
    const w = d.pgtable!.walk(va);
    this.stats.walks++;
    this.stats.walkLevels += w.levelsTouched;
    cost.walkLevels += w.levelsTouched;
    if (!w.present) return 'not-present';
    return this.iotlb.fill({
      domainId: d.id,
      pageShift: w.pageShift,
      iovaBase: w.iovaBase,
      physBase: w.physBase,
      read: w.read,
      write: w.write,
    });
  }

  private fault(
    requester: string,
    iova: DmaAddr,
    access: IommuAccess,
    reason: IommuFaultReason,
    domainId: number | null,
    cost: TranslateCost,
  ): TranslateResult {
    const fault: IommuFault = { requester, iova, access, reason, domainId };
    if (this.faults.length < this.faultLogLimit) this.faults.push(fault);
    else this.faultsDropped++;
    return { ok: false, fault, ...cost };
  }

  private domain(id: number): HwDomain {
    const d = this.domains.get(id);
    if (!d) throw new Error(`iommu ${this.name}: no domain ${id}`);
    return d;
  }
}
