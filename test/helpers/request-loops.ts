// Concurrent request loops for tests that change a cluster while it serves: `concurrency` loops
// each send one request after another until `until` settles, and every outcome is kept (a text or
// an error message), so a test can assert that nothing failed and every text is the expected one.

export interface LoopOutcomes<T> {
  readonly results: T[];
  readonly errors: string[];
}

export async function requestLoops<T>(
  concurrency: number,
  until: Promise<unknown>,
  request: (loop: number, k: number) => Promise<T>,
): Promise<LoopOutcomes<T>> {
  let done = false;
  void until.finally(() => {
    done = true;
  });
  const results: T[] = [];
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      for (let k = 0; !done; k++) {
        await request(loop, k).then(
          (r) => results.push(r),
          (e: Error) => errors.push(e.message),
        );
      }
    }),
  );
  return { results, errors };
}
