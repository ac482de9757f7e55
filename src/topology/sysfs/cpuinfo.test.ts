import { describe, expect, it } from 'vitest';
import { parseProcCpuinfo } from './cpuinfo.js';

const x86 = (id: number) => `processor\t: ${id}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
physical id\t: ${id % 2}
flags\t\t: fpu vme lm svm
`;

describe('parseProcCpuinfo', () => {
  it('reads x86 vendor, family, model and counts sockets by physical id', () => {
    const { cpu, note } = parseProcCpuinfo([0, 1, 2, 3].map(x86).join('\n'));
    expect(note).toBeNull();
    expect(cpu).toEqual({
      vendorId: 'AuthenticAMD',
      family: 25,
      model: 1,
      modelName: 'AMD EPYC 7763 64-Core Processor',
      arch: 'x86_64',
      sockets: 2,
    });
  });
  it('leaves sockets unknown without physical id, and tells i686 by the missing lm flag', () => {
    const { cpu } = parseProcCpuinfo('vendor_id : GenuineIntel\ncpu family : 6\nmodel : 94\nflags : fpu\n');
    expect(cpu?.sockets).toBeNull();
    expect(cpu?.arch).toBe('i686');
    expect(cpu?.modelName).toBe('');
  });
  it('reads POWER (ppc64le) cpuinfo', () => {
    const text = `processor\t: 0
cpu\t\t: POWER8E (raw), altivec supported
clock\t\t: 3690.000000MHz
revision\t: 2.1 (pvr 004b 0201)

processor\t: 8
cpu\t\t: POWER8E (raw), altivec supported

timebase\t: 512000000
platform\t: PowerNV
model\t\t: 8247-22L
`;
    expect(parseProcCpuinfo(text).cpu).toEqual({
      vendorId: 'IBM',
      family: 0x004b,
      model: 0x0201,
      modelName: 'POWER8E (raw), altivec supported',
      arch: 'ppc64le',
      sockets: null,
    });
  });
  it('reads aarch64 cpuinfo by CPU implementer', () => {
    const text = `processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
`;
    expect(parseProcCpuinfo(text).cpu).toEqual({
      vendorId: 'ARM',
      family: 8,
      model: 0xd0c,
      modelName: 'ARM part 0xd0c',
      arch: 'aarch64',
      sockets: null,
    });
  });
  it('returns null with a note for formats it does not read', () => {
    const r = parseProcCpuinfo('processor : 0\nhart : 0\nisa : rv64imafdc\nmmu : sv39\n');
    expect(r.cpu).toBeNull();
    expect(r.note).toMatch(/format dmasim does not read/);
    expect(parseProcCpuinfo('\n').note).toMatch(/empty/);
  });
});
