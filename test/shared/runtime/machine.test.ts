// machineInfo: benchmarks record which CPU they ran on precisely enough to tell apart machines
// that share a model name ("AMD EPYC" covers several generations with different caches).

import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { machineInfo, parseCpuInfo } from '../../../shared/runtime/machine.js';

const TWO_CPUS = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
flags\t\t: avx2 amx_tile
`;

describe('parseCpuInfo', () => {
  it('reads the first processor block: vendor, family, model, stepping and SIMD extensions', () => {
    expect(parseCpuInfo(TWO_CPUS)).toEqual({
      signature: 'AuthenticAMD family 26 model 2 stepping 1',
      simd: ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16'],
    });
  });

  it('leaves the stepping out where the kernel does not report it', () => {
    const intel = TWO_CPUS.split('\n\n')[1] ?? '';
    expect(parseCpuInfo(intel)).toEqual({
      signature: 'GenuineIntel family 6 model 143',
      simd: ['avx2', 'amx_tile'],
    });
  });

  it('gives nothing for text without an x86 identity (an ARM cpuinfo, say)', () => {
    expect(parseCpuInfo('processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n')).toBeUndefined();
  });
});

describe('machineInfo', () => {
  it('records this machine, with its CPU identity where /proc/cpuinfo names one', () => {
    const info = machineInfo();
    expect(info.cores).toBeGreaterThan(0);
    expect(info.onnxruntime).toMatch(/^\d+\.\d+/);
    const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
    expect(info.cpuIdentity).toEqual(parseCpuInfo(cpuinfo));
  });
});
