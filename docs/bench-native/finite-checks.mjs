// The checks every wire section and combined row goes through (firstNonFinite, normOverflows), the
// shipped forms against the compare-per-element loops they replaced, interleaved round by round in
// one process: docs/expert-parallelism.md's "What the checks cost". Not part of kmoe; run from the
// repository after `npm run build`:
//   node docs/bench-native/finite-checks.mjs            # hidden 256 (demo model) and 6144 (8x22B)
import { normOverflows } from '../../dist/shared/model/norm-overflow.js';
import { firstNonFinite } from '../../dist/shared/protocol/wire-dtype.js';

const ROUNDS = 9;

// The forms before this change, as they were.
function comparedF32(values) {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) return i;
  return -1;
}
function compared16(values, mask) {
  for (let i = 0; i < values.length; i++) if ((values[i] & mask) === mask) return i;
  return -1;
}
function oneChain(row) {
  let s = 0;
  for (let i = 0; i < row.length; i++) s += row[i] * row[i];
  return !(s < 3.4028234663852886e38);
}

/** Median ns per call of each form, the forms taking turns round by round over 64 rotating rows. */
function time(forms, rows) {
  const reps = Math.floor(4e7 / rows[0].length);
  const per = forms.map(() => []);
  let sink = 0;
  for (const [, f] of forms) for (let i = 0; i < 20000; i++) sink += f(rows[i & 63]);
  for (let r = 0; r < ROUNDS; r++)
    forms.forEach(([, f], k) => {
      const t = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) sink += f(rows[i & 63]);
      per[k].push(Number(process.hrtime.bigint() - t) / reps);
    });
  if (sink === 0.5) console.log(sink); // keeps the calls observable
  return per.map((t) => t.sort((a, b) => a - b)[ROUNDS >> 1]);
}

for (const H of [256, 6144]) {
  const f32 = Array.from({ length: 64 }, () => new Float32Array(H).map(() => Math.random() - 0.5));
  const bf16 = Array.from({ length: 64 }, () => new Uint16Array(H).map(() => Math.floor(Math.random() * 0x3f00)));
  const pairs = [
    ['fp32 section', f32, [['compare per element', comparedF32], ['shipped', (v) => firstNonFinite(v, 'fp32')]]],
    ['bf16 section', bf16, [['compare per element', (v) => compared16(v, 0x7f80)], ['shipped', (v) => firstNonFinite(v, 'bf16')]]],
    ['row norm overflow', f32, [['one sum', (v) => (oneChain(v) ? 1 : 0)], ['shipped', (v) => (normOverflows(v) ? 1 : 0)]]],
  ];
  for (const [what, rows, forms] of pairs) {
    const [before, after] = time(forms, rows);
    console.log(
      `hidden ${H}, ${what}: ${before.toFixed(0)} -> ${after.toFixed(0)} ns per row (${(before / H).toFixed(2)} -> ${(after / H).toFixed(2)} ns per value)`,
    );
  }
}
