import { describe, expect, it } from 'vitest';
import { busAddr, bytes, MiB, physAddr } from '../../hw/addr.js';
import { buildMachine } from '../../hw/machine-builder.js';
import { parseMachineYaml } from '../../topology/machine-file/index.js';
import { bootKernel, type Kernel } from '../kernel.js';
import { PAGE_OFFSET } from '../mm/direct-map.js';
import { genPoolSize } from '../mm/genalloc.js';
import { getPage, pfnToPage, putPage } from '../mm/page.js';
import type { KernelVersion } from '../profile.js';
import { pciAllocP2pmem, pciFreeP2pmem, pciP2pmemVirtToBus } from './p2pdma-alloc.js';
import { pciP2pdmaBusAddrMap } from './p2pdma-map.js';
import {
  pcimP2pdmaInit,
  pcimP2pdmaProvider,
  pciP2pdmaAddResource,
  pciP2pdmaOf,
  pciP2pdmaRelease,
} from './p2pdma-provider.js';
import { p2pmemAllocMmap, p2pmemSysfsRead } from './p2pdma-sysfs.js';
import { p2pMachine, testbedBar0 } from './p2pdma-testbed.js';

const VERSIONS: readonly KernelVersion[] = ['6.1', 'newest'];
const BAR_LEN = 256n * MiB;

function setup(version: KernelVersion, busOffset = 0n) {
  const k = bootKernel(p2pMachine({ busOffset }), { version });
  const ep = k.machine.byName.get('0000:03:00.0')!;
  return { k, ep };
}
const errnoOf = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);
const lastLine = (k: Kernel): string | undefined => k.log.lines[k.log.lines.length - 1]?.text;

describe.each(VERSIONS)('pci_p2pdma_add_resource (%s)', (version) => {
  it('refuses in the kernel order: non-memory BAR, offset beyond, size overflow', () => {
    const { k, ep } = setup(version);
    // Each case would also fail every later check, so only the order explains the result.
    expect(errnoOf(pciP2pdmaAddResource(k, ep, 4, BAR_LEN * 2n, BAR_LEN * 2n))).toBe('EINVAL'); // I/O BAR
    expect(errnoOf(pciP2pdmaAddResource(k, ep, 1, 0n, 0n))).toBe('EINVAL'); // no BAR 1
    expect(pciP2pdmaAddResource(k, ep, 4, 0n, 0n)).toMatchObject({
      detail: expect.stringMatching(/not a memory BAR/),
    });
    expect(pciP2pdmaAddResource(k, ep, 0, BAR_LEN * 2n, BAR_LEN)).toMatchObject({
      detail: expect.stringMatching(/beyond BAR 0/),
    });
    expect(pciP2pdmaAddResource(k, ep, 0, BAR_LEN, 2n * MiB)).toMatchObject({
      errno: 'EINVAL',
      detail: expect.stringMatching(/exceed BAR 0/),
    });
    // Nothing was set up by a refused call.
    expect(pciP2pdmaOf(k, ep)).toBeNull();
    expect(k.mm.pgmaps.size).toBe(0);
  });

  it('takes the rest of the BAR for size 0 and logs the range', () => {
    const { k, ep } = setup(version);
    expect(pciP2pdmaAddResource(k, ep, 0, 0n, 64n * MiB)).toEqual({ ok: true, value: undefined });
    const start = testbedBar0(0) + 64n * MiB;
    expect(lastLine(k)).toBe(
      `nvme 0000:03:00.0: added peer-to-peer DMA memory 0x${start.toString(16)}-0x${(testbedBar0(0) + BAR_LEN - 1n).toString(16)}`,
    );
    const st = pciP2pdmaOf(k, ep)!;
    expect(genPoolSize(st.pool!)).toBe(BAR_LEN - 64n * MiB);
    expect(st.published).toBe(false);
    const pg = k.mm.pgmaps.lookup(Number(start >> 12n))!;
    expect([pg.type, pg.provider?.owner, pg.provider?.bar]).toEqual(['pci-p2pdma', ep, 0]);
  });

  it('lets a size wrap past 2^64 through its own check; memremap then refuses the range', () => {
    const { k, ep } = setup(version);
    const r = pciP2pdmaAddResource(k, ep, 0, (1n << 64n) - 1n, 1n);
    expect(errnoOf(r)).toBe('EINVAL');
    expect(lastLine(k)).toMatch(
      /^Hotplug memory \[0x38000000001-0x38000000000\] exceeds maximum addressable range/,
    );
  });

  it('passes memremap errors through: misaligned BAR, overlap', () => {
    const { k, ep } = setup(version);
    expect(errnoOf(pciP2pdmaAddResource(k, ep, 2, 0n, 0n))).toBe('EINVAL'); // 16 KiB BAR: not 2 MiB
    expect(lastLine(k)).toBe('Misaligned __add_pages start: 0xfe000 end: 0xfe003');
    // The pool and its sysfs group were set up before memremap failed, and stay.
    expect(p2pmemSysfsRead(k, ep, 'size')).toEqual({ ok: true, value: '0\n' });
    expect(pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 0n).ok).toBe(true);
    expect(errnoOf(pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 2n * MiB))).toBe('ENOMEM');
    expect(lastLine(k)).toBe('Conflicting mapping in same section');
    expect(pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 4n * MiB).ok).toBe(true);
    expect(genPoolSize(pciP2pdmaOf(k, ep)!.pool!)).toBe(8n * MiB);
  });

  it('gives the pool bus addresses and the pagemap the bus offset when the host bridge offsets BARs', () => {
    const busOffset = 0x300_0000_0000n; // bus address = CPU address - 3 TiB
    const { k, ep } = setup(version, busOffset);
    expect(pciP2pdmaAddResource(k, ep, 0, 0n, 0n).ok).toBe(true);
    const cpu = testbedBar0(0);
    const pg = k.mm.pgmaps.lookup(Number(cpu >> 12n))!;
    expect(pg.provider!.busOffset).toBe(BigInt.asUintN(64, -busOffset));
    const a = pciAllocP2pmem(k, ep, 3n * 4096n)!;
    const b = pciAllocP2pmem(k, ep, 4096n)!;
    expect(a).toBe(PAGE_OFFSET + cpu);
    expect(pciP2pmemVirtToBus(k, ep, b)).toBe(cpu - busOffset + 3n * 4096n);
    expect(pciP2pdmaBusAddrMap(pg.provider!, physAddr(cpu + 0x5000n))).toBe(cpu - busOffset + 0x5000n);
  });
});

describe('bus offset from a machine file', () => {
  // The host bridge decodes CPU 0x10_e000_0000.. as bus 0xe000_0000.. (busOffset = CPU - bus).
  const yaml = [
    'name: offset-test',
    'cpu: { vendor: GenuineIntel, family: 6, model: 85, name: Xeon, sockets: 1 }',
    'hostBridges:',
    '  - hostBridgeId: 8086:2020',
    '    busOffset: 0x1000000000',
    '    mmio: { base: 0x10e0000000, size: 256M }',
    '    mmio64: { base: 0x2000000000, size: 64G }',
    '    devices:',
    '      - { kind: root-port, slot: 1, id: 8086:2030, devices: [{ kind: endpoint, id: 1b36:0010, class: nvme, cmb: 16M }] }',
  ].join('\n');

  it.each(VERSIONS)('puts bus addresses in the pool and the offset in the provider (%s)', (version) => {
    const k = bootKernel(parseMachineYaml(yaml, 'offset-test.yaml'), { version });
    const nvme = k.machine.byName.get('0000:01:00.0')!;
    const cmb = nvme.hints!.cmb!;
    const b = nvme.bars.find((x) => x.index === cmb.bar)!;
    expect(b.busStart).toBe(b.cpuStart - 0x10_0000_0000n);
    expect(pciP2pdmaAddResource(k, nvme, cmb.bar, cmb.size, 0n).ok).toBe(true);
    const provider = k.mm.pgmaps.all()[0]!.provider!;
    expect(provider.busOffset).toBe(BigInt.asUintN(64, -0x10_0000_0000n));
    const a = pciAllocP2pmem(k, nvme, 8192n)!;
    expect(pciP2pmemVirtToBus(k, nvme, a)).toBe(b.busStart);
    expect(pciP2pdmaBusAddrMap(provider, physAddr(b.cpuStart + 0x2000n))).toBe(b.busStart + 0x2000n);
  });
});

describe('pcim_p2pdma_init / pcim_p2pdma_provider (newest)', () => {
  it('makes a provider per memory BAR, without a pool, idempotently', () => {
    const { k, ep } = setup('newest', 0x1000n * MiB);
    expect(pcimP2pdmaProvider(k, ep, 0)).toBeNull();
    expect(lastLine(k)).toBe('WARNING: drivers/pci/p2pdma.c: pcim_p2pdma_provider: WARN_ON(!p2p)');
    expect(pcimP2pdmaInit(k, ep)).toEqual({ ok: true, value: undefined });
    const st = pciP2pdmaOf(k, ep)!;
    expect(pcimP2pdmaInit(k, ep).ok).toBe(true);
    expect(pciP2pdmaOf(k, ep)).toBe(st);
    expect(st.pool).toBeNull();
    expect(pcimP2pdmaProvider(k, ep, 0)).toEqual({
      owner: ep,
      busOffset: BigInt.asUintN(64, -(0x1000n * MiB)),
      bar: 0,
    });
    expect(pcimP2pdmaProvider(k, ep, 2)?.bar).toBe(2);
    expect(pcimP2pdmaProvider(k, ep, 4)).toBeNull(); // I/O BAR
    expect(pcimP2pdmaProvider(k, ep, 3)).toBeNull(); // no BAR
    expect(p2pmemSysfsRead(k, ep, 'size').ok).toBe(false); // no pool, no sysfs group
    // add_resource reuses the same provider object for its pagemap.
    expect(pciP2pdmaAddResource(k, ep, 0, 0n, 0n).ok).toBe(true);
    expect(k.mm.pgmaps.all()[0]?.provider).toBe(pcimP2pdmaProvider(k, ep, 0));
  });

  it('refuses devices whose BARs cannot be mapped (s390 ISM) and does not exist in 6.1', () => {
    const ism = buildMachine({
      name: 's390',
      source: { kind: 'builtin', path: 'test' },
      cpu: { vendorId: 'IBM/S390', family: 0, model: 0, modelName: 'z16', arch: 's390x', sockets: 1 },
      cmdline: null,
      iommu: null,
      hostBridges: [{ name: 'pci0000:00', domain: 0, rootBus: 0 }],
      functions: [
        {
          name: '0000:00:00.0',
          parent: { kind: 'host', hostBridge: 'pci0000:00' },
          vendor: 0x1014,
          device: 0x04ed,
          classCode: 0x028000,
          headerType: 0,
          portType: 'endpoint',
          acs: { state: 'absent' },
          bars: [
            {
              index: 0,
              kind: 'mem64',
              prefetchable: false,
              cpuStart: physAddr(1n << 40n),
              busStart: busAddr(1n << 40n),
              size: bytes(2n * MiB),
            },
          ],
        },
      ],
    });
    const k = bootKernel(ism, { version: 'newest' });
    const dev = k.machine.functions[0]!;
    expect(errnoOf(pcimP2pdmaInit(k, dev))).toBe('EOPNOTSUPP');
    expect(errnoOf(pciP2pdmaAddResource(k, dev, 0, 0n, 0n))).toBe('EOPNOTSUPP');
    expect(pcimP2pdmaProvider(k, dev, 0)).toBeNull();
    const k61 = bootKernel(ism, { version: '6.1' });
    expect(() => pcimP2pdmaInit(k61, dev)).toThrow(/does not exist in Linux 6.1/);
    expect(pciP2pdmaAddResource(k61, dev, 0, 0n, 0n).ok).toBe(true); // 6.1 has no non_mappable_bars
  });
});

describe.each(VERSIONS)('provider release on unbind (%s)', (version) => {
  function bound() {
    const { k, ep } = setup(version);
    expect(pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 0n).ok).toBe(true);
    expect(pciP2pdmaAddResource(k, ep, 0, 4n * MiB, 8n * MiB).ok).toBe(true);
    return { k, ep };
  }

  it('tears everything down at once when no memory is in use', () => {
    const { k, ep } = bound();
    let done = 0;
    expect(pciP2pdmaRelease(k, ep, () => done++)).toEqual({ done: true, waitingOn: null });
    expect([done, pciP2pdmaOf(k, ep), k.mm.pgmaps.size]).toEqual([1, null, 0]);
    expect(errnoOf(p2pmemSysfsRead(k, ep, 'available'))).toBe('ENOENT');
    expect(pciAllocP2pmem(k, ep, 4096n)).toBeNull();
  });

  it('waits while an allocation is out: new allocations fail, pages stay valid, the free finishes it', () => {
    const { k, ep } = bound();
    const a = pciAllocP2pmem(k, ep, 4096n)!;
    let done = 0;
    const r = pciP2pdmaRelease(k, ep, () => done++);
    expect(r.done).toBe(false);
    expect(r.waitingOn?.start).toBe(testbedBar0(0) + 8n * MiB); // the newest pagemap is torn down first
    expect(pciAllocP2pmem(k, ep, 4096n)).toBeNull(); // its ref is dying
    expect(k.mm.pgmaps.size).toBe(2);
    expect(pfnToPage(k.mm, Number((a - PAGE_OFFSET) >> 12n))?.pgmap?.state).toBe('dying');
    pciFreeP2pmem(k, ep, a, 4096n);
    expect([done, pciP2pdmaOf(k, ep), k.mm.pgmaps.size]).toEqual([1, null, 0]);
  });
});

describe('provider release with user mappings (newest)', () => {
  it('zaps the allocate mappings; a page still pinned keeps the unbind waiting until it is put', () => {
    const { k, ep } = setup('newest');
    expect(pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n).ok).toBe(true);
    const m = p2pmemAllocMmap(k, ep, { lenBytes: 4n * 4096n, shared: true, pgoff: 0, comm: 'fio' });
    if (!m.ok) throw new Error(m.detail);
    const pinned = pfnToPage(k.mm, m.value.pfns[2]!)!;
    getPage(pinned); // an O_DIRECT read in flight holds the page
    const r = pciP2pdmaRelease(k, ep);
    expect(r.done).toBe(false);
    expect(m.value.live).toBe(false);
    expect(pinned.refcount).toBe(1);
    putPage(k.mm, pinned);
    expect(pciP2pdmaOf(k, ep)).toBeNull();
    expect(k.mm.pgmaps.size).toBe(0);
  });

  it('is a bug to add memory while unbinding', () => {
    const { k, ep } = setup('newest');
    expect(pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 0n).ok).toBe(true);
    const a = pciAllocP2pmem(k, ep, 4096n)!;
    pciP2pdmaRelease(k, ep);
    expect(() => pciP2pdmaAddResource(k, ep, 0, 2n * MiB, 2n * MiB)).toThrow(/being unbound/);
    pciFreeP2pmem(k, ep, a, 4096n);
  });
});
