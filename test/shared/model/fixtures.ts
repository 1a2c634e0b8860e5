// Helpers for the model-loading tests: write safetensors files byte by byte (so tests can also
// write malformed ones), make throwaway directories, and stage edited copies of the demo checkpoint.

import { copyFile, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEMO_DIR = fileURLToPath(new URL('../../../models/tiny-mixtral/', import.meta.url));
export const DEMO_SHARD_1 = 'model-00001-of-00002.safetensors';
export const DEMO_SHARD_2 = 'model-00002-of-00002.safetensors';
export const DEMO_INDEX = 'model.safetensors.index.json';

export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Lays tensors out back to back and returns the header object and the data section. */
export function layout(
  tensors: readonly RawTensor[],
  metadata?: Record<string, string>,
): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header['__metadata__'] = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const data = new Uint8Array(offset);
  offset = 0;
  for (const t of tensors) {
    data.set(t.bytes, offset);
    offset += t.bytes.length;
  }
  return { header, data };
}

/**
 * The bytes of a safetensors file. `headerText` replaces the JSON (for invalid headers),
 * `declaredLength` replaces the 8-byte length prefix, `padTo` pads the JSON with spaces (allowed
 * by the format) to that many bytes.
 */
export function encodeSafetensors(
  header: unknown,
  data: Uint8Array,
  options: { headerText?: string; declaredLength?: bigint; padTo?: number } = {},
): Uint8Array {
  let json = Buffer.from(options.headerText ?? JSON.stringify(header), 'utf8');
  if (options.padTo !== undefined && options.padTo > json.length) {
    json = Buffer.concat([json, Buffer.alloc(options.padTo - json.length, 0x20)]);
  }
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, options.declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

export async function writeSafetensors(
  file: string,
  tensors: readonly RawTensor[],
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, data } = layout(tensors, metadata);
  await writeFile(file, encodeSafetensors(header, data));
}

export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}

export async function makeTempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kmoe-model-test-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Fills `dir` with the demo checkpoint: files named in `replace` are written with the given
 * content, every other file is symlinked (the shards are 30 MB; tests that edit them copy instead).
 */
export async function stageDemo(
  dir: string,
  replace: Record<string, string | Uint8Array> = {},
): Promise<void> {
  for (const name of await readdir(DEMO_DIR)) {
    const content = replace[name];
    if (content === undefined) await symlink(path.join(DEMO_DIR, name), path.join(dir, name));
    else await writeFile(path.join(dir, name), content);
  }
}

export async function demoJson(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(DEMO_DIR, name), 'utf8')) as Record<string, unknown>;
}

export async function copyDemoFile(name: string, to: string): Promise<void> {
  await copyFile(path.join(DEMO_DIR, name), to);
}

/** Header size (8-byte prefix + JSON) of a safetensors file, read independently of the code under test. */
export async function headerBytesOf(file: string): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8);
    await handle.read(buf, 0, 8, 0);
    return 8 + Number(buf.readBigUInt64LE(0));
  } finally {
    await handle.close();
  }
}
