// The memory-management state of one kernel: the physical address map, the struct pages referenced so
// far, the registered dev_pagemaps and their fast pfn index, and the per-profile facts of mm/memremap.c.
//
// RAM pages are implicit: a `struct page` record is made the first time a pfn is referenced (the kernel
// has them all from boot; the model only keeps the ones something touched). ZONE_DEVICE pages are made
// the same way, with the refcount an idle page of their pagemap has in this profile.

import type { Machine } from '../../hw/pci.js';
import type { KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import type { DevPagemap, PgmapType } from './memremap.js';
import type { Page } from './page.js';
import { PgmapTable } from './pgmap-lookup.js';
import { buildPhysMap, type PhysLayout, type PhysMap } from './phys-map.js';

/** What differs between kernels in ZONE_DEVICE page handling. */
export interface MmProfile {
  /** Refcount of a free (idle) ZONE_DEVICE page of each pagemap type. */
  readonly idleRefcount: Readonly<Record<PgmapType, number>>;
  /** After the free callback ran, the count is reset to 1 for these types (6.1 and up to 2025). */
  readonly resetCountAfterFree: Readonly<Record<PgmapType, boolean>>;
  /** free_zone_device_page() calls the pagemap's free callback for these types (WARN_ON_ONCE if missing). */
  readonly freeCallsOp: Readonly<Record<PgmapType, boolean>>;
  /** The name of the pagemap free callback (`page_free` / `folio_free`) in messages. */
  readonly freeOpName: string;
  /** The function that runs when a ZONE_DEVICE page's count reaches 0. */
  readonly freeFnName: string;
}

const MM_PROFILES: Readonly<Record<KernelVersion, MmProfile>> = {
  // 6.1: memmap_init_zone_device() gives every page count 1, except device private/coherent (0);
  // free_zone_device_page() needs ops->page_free and then resets the count to 1 for the other types.
  '6.1': {
    idleRefcount: { private: 0, coherent: 0, 'fs-dax': 1, generic: 1, 'pci-p2pdma': 1 },
    resetCountAfterFree: {
      private: false,
      coherent: false,
      'fs-dax': true,
      generic: true,
      'pci-p2pdma': true,
    },
    freeCallsOp: { private: true, coherent: true, 'fs-dax': true, generic: true, 'pci-p2pdma': true },
    freeOpName: 'page_free',
    freeFnName: 'free_zone_device_page',
  },
  // 2025+: free ZONE_DEVICE pages have count 0 (only "generic" keeps 1); free_zone_device_folio()
  // calls ops->folio_free for private, coherent and P2PDMA and resets only generic pages to 1.
  newest: {
    idleRefcount: { private: 0, coherent: 0, 'fs-dax': 0, generic: 1, 'pci-p2pdma': 0 },
    resetCountAfterFree: {
      private: false,
      coherent: false,
      'fs-dax': false,
      generic: true,
      'pci-p2pdma': false,
    },
    freeCallsOp: { private: true, coherent: true, 'fs-dax': false, generic: false, 'pci-p2pdma': true },
    freeOpName: 'folio_free',
    freeFnName: 'free_zone_device_folio',
  },
};

export interface MmState {
  readonly version: KernelVersion;
  readonly profile: MmProfile;
  readonly physMap: PhysMap;
  /** `pgmap_array`: pfn -> pagemap. */
  readonly pgmaps: PgmapTable<DevPagemap>;
  /** struct pages referenced so far, by pfn. */
  readonly pages: Map<number, Page>;
  readonly log: KernelLog;
  /** WARN_ONCE sites that already fired. */
  readonly warnedOnce: Set<string>;
  nextPgmapId: number;
}

/** The parts of a Kernel mmInit needs (the Kernel itself satisfies this). */
export interface MmInitContext {
  readonly machine: Machine;
  readonly version: KernelVersion;
  readonly log: KernelLog;
}

/** Set up memory management for a booting kernel: the physical map and empty page/pagemap tables. */
export function mmInit(k: MmInitContext, layout: PhysLayout = {}): MmState {
  return {
    version: k.version,
    profile: MM_PROFILES[k.version],
    physMap: buildPhysMap(k.machine, layout),
    pgmaps: new PgmapTable<DevPagemap>(),
    pages: new Map(),
    log: k.log,
    warnedOnce: new Set(),
    nextPgmapId: 0,
  };
}

/** `WARN(1, ...)`: the message line as dmesg shows it. */
export const mmWarn = (mm: MmState, text: string): void => mm.log.printk('warn', text);

/** `WARN_ONCE(1, ...)`: only the first time for `site`. */
export function mmWarnOnce(mm: MmState, site: string, text: string): void {
  if (mm.warnedOnce.has(site)) return;
  mm.warnedOnce.add(site);
  mmWarn(mm, text);
}
