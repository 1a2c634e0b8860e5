// Bounded memories of the latest entries (departed workers, validated profiles, decoded tensors): a
// key stored again moves to the newest end, and past `max` entries the oldest goes. Maps and Sets
// iterate in insertion order, so the oldest is the first.

/** Sets `key` in `map` as its newest entry, dropping the oldest beyond `max`. */
export function setLatest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}

/** Adds `key` to `set` as its newest entry, dropping the oldest beyond `max`. */
export function addLatest<K>(set: Set<K>, key: K, max: number): void {
  set.delete(key);
  set.add(key);
  if (set.size > max) set.delete(set.values().next().value!);
}
