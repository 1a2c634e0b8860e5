// One SwiGLU expert of the demo model's shape on one row, in llama.cpp's layout (w1, w3 [F][H],
// w2 [H][F], row-major), as plain dot products: the yardstick for how fast one core can stream fp32
// expert weights (docs/performance.md, "What keeps fp32 decode below llama.cpp"). Not part of kmoe.
//   gcc -O3 -march=native -ffast-math gemv-expert.c -o gemv-expert -lm
//   ./gemv-expert 32   # the demo model's 32 experts (48 MiB) visited in turn: weights from memory
//   ./gemv-expert 1    # one expert again and again: weights in cache
// Other shapes at compile time, e.g. mixtral-mid's (docs/performance.md, section 6; 2 rounds per
// measurement, since one expert is 42 MiB):
//   gcc -O3 -march=native -ffast-math -DHH=1024 -DFF=3584 -DRR=2 gemv-expert.c -o gemv-mid -lm
//   ./gemv-mid 32
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifndef HH
#define HH 256
#endif
#ifndef FF
#define FF 512
#endif
#ifndef RR
#define RR 20
#endif
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double d = *(double *)a - *(double *)b; return (d > 0) - (d < 0); }
int main(int argc, char **argv) {
  size_t H = HH, F = FF, NE = argc > 1 ? atoi(argv[1]) : 32, per = 3 * H * F;
  float *w = aligned_alloc(64, NE * per * 4);
  for (size_t i = 0; i < NE * per; i++) w[i] = (i % 7) * 0.01f;
  static float x[HH], a[FF], y[HH];
  for (int i = 0; i < HH; i++) x[i] = 0.01f * i;
  double t[15];
  for (int rep = 0; rep < 15; rep++) {
    double t0 = now(); int R = RR;
    for (int r = 0; r < R; r++) for (size_t e = 0; e < NE; e++) {
      const float *W1 = w + e * per, *W3 = W1 + H * F, *W2 = W3 + H * F;
      for (size_t f = 0; f < F; f++) {
        float s1 = 0, s3 = 0;
        for (size_t h = 0; h < H; h++) { s1 += W1[f * H + h] * x[h]; s3 += W3[f * H + h] * x[h]; }
        a[f] = s1 / (1 + __builtin_expf(-s1)) * s3;
      }
      for (size_t h = 0; h < H; h++) { float s = 0; for (size_t f = 0; f < F; f++) s += W2[h * F + f] * a[f]; y[h] = s; }
      x[e % 256] += y[e % 256] * 1e-9f; // a dependency so no expert is optimised away
    }
    t[rep] = (now() - t0) / (R * NE) * 1e6;
  }
  qsort(t, 15, sizeof t[0], cmp);
  printf("C GEMV expert H%zu F%zu NE%zu: median %.1f us, min %.1f (check %g)\n", H, F, NE, t[7], t[0], x[3]);
}
