import type { Redis } from 'ioredis';

/** Every key matching `pattern` (SCAN: never blocks Redis as KEYS would), each once. */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
    for (const k of batch) found.add(k);
    cursor = next;
  } while (cursor !== '0');
  return [...found];
}
