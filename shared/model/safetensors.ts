// Reader for one .safetensors file: validates the whole header up front (so a malformed or
// truncated file fails at open, never mid-inference), then reads single tensors on demand with
// positioned reads, so a worker hosting two experts never touches the bytes of the others.

import { type FileHandle, open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { z } from 'zod';
import { elementCount, makeTensor, type Tensor } from '../tensor.js';
import { SafetensorsError } from './errors.js';

/** The storage dtypes kmoe loads, with their element size and the tensor dtype they become. */
export const SAFETENSORS_DTYPES = {
  BF16: { bytes: 2, tensorDType: 'bfloat16' },
  F16: { bytes: 2, tensorDType: 'float16' },
  F32: { bytes: 4, tensorDType: 'float32' },
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

export type StoredTensor = Tensor<'bfloat16'> | Tensor<'float16'> | Tensor<'float32'>;

export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** [begin, end) relative to the start of the data section, as in the header. */
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
}

export interface SafetensorsOpenOptions {
  /** Largest header accepted, in bytes. */
  maxHeaderBytes?: number;
}

/** The reference implementation (huggingface/safetensors) refuses headers above 100 MB too. */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

const HEADER_LENGTH_BYTES = 8;
// fs reads are limited to 2 GiB per call; embedding tables of large models exceed that.
const READ_CHUNK_BYTES = 1 << 30;

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.int().nonnegative()),
  data_offsets: z.tuple([z.int().nonnegative(), z.int().nonnegative()]),
});
const metadataSchema = z.record(z.string(), z.string());
const headerSchema = z.record(z.string(), z.unknown());

export class SafetensorsFile {
  readonly path: string;
  /** Size of the whole file at open. */
  readonly fileSize: number;
  /** 8-byte length prefix plus the JSON header: where the data section starts. */
  readonly headerBytes: number;
  /** The optional `__metadata__` string map (e.g. `{ format: 'pt' }`). */
  readonly metadata: Readonly<Record<string, string>>;

  #handle: FileHandle | undefined;
  readonly #tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  #bytesRead: number;

  private constructor(
    path: string,
    handle: FileHandle,
    fileSize: number,
    headerBytes: number,
    metadata: Record<string, string>,
    tensors: Map<string, SafetensorsTensorInfo>,
  ) {
    this.path = path;
    this.#handle = handle;
    this.fileSize = fileSize;
    this.headerBytes = headerBytes;
    this.metadata = metadata;
    this.#tensors = tensors;
    this.#bytesRead = headerBytes;
  }

  /** Opens the file and validates its header; reads no tensor data. */
  static async open(path: string, options: SafetensorsOpenOptions = {}): Promise<SafetensorsFile> {
    if (endianness() !== 'LE') {
      // Typed arrays use host byte order and safetensors is little-endian; nobody runs kmoe on a
      // big-endian host, so refuse rather than carry a byte-swapping path.
      throw new SafetensorsError(`${path}: kmoe reads safetensors only on little-endian hosts`, {
        file: path,
      });
    }
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw new SafetensorsError(
        `${path}: cannot open (${err instanceof Error ? err.message : String(err)})`,
        {
          file: path,
          cause: err,
        },
      );
    }
    try {
      return await SafetensorsFile.#readHeader(
        path,
        handle,
        options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES,
      );
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  static async #readHeader(
    path: string,
    handle: FileHandle,
    maxHeaderBytes: number,
  ): Promise<SafetensorsFile> {
    const fail = (message: string, tensor?: string, cause?: unknown): never => {
      throw new SafetensorsError(`${path}: ${message}`, {
        file: path,
        ...(tensor === undefined ? {} : { tensor }),
        ...(cause === undefined ? {} : { cause }),
        hint: 'the file is not a valid safetensors file; re-download or re-convert it',
      });
    };

    const fileSize = (await handle.stat()).size;
    if (fileSize < HEADER_LENGTH_BYTES) {
      fail(`file is ${fileSize} bytes, too short for the 8-byte header length`);
    }
    const lengthBuf = new Uint8Array(HEADER_LENGTH_BYTES);
    await readFully(path, handle, lengthBuf, 0);
    const headerLength = new DataView(lengthBuf.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(maxHeaderBytes)) {
      fail(`header length ${headerLength} exceeds the limit of ${maxHeaderBytes} bytes`);
    }
    if (headerLength > BigInt(fileSize - HEADER_LENGTH_BYTES)) {
      fail(
        `header length ${headerLength} exceeds the ${fileSize - HEADER_LENGTH_BYTES} bytes after the length field`,
      );
    }
    const headerBytes = HEADER_LENGTH_BYTES + Number(headerLength);
    const headerBuf = new Uint8Array(Number(headerLength));
    await readFully(path, handle, headerBuf, HEADER_LENGTH_BYTES);

    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
    } catch (err) {
      fail(
        `header is not valid UTF-8 JSON (${err instanceof Error ? err.message : String(err)})`,
        undefined,
        err,
      );
    }
    const header = headerSchema.safeParse(parsed);
    if (!header.success || Array.isArray(parsed)) {
      return fail('header is not a JSON object');
    }

    const dataSize = fileSize - headerBytes;
    let metadata: Record<string, string> = {};
    const tensors = new Map<string, SafetensorsTensorInfo>();
    for (const [name, value] of Object.entries(header.data)) {
      if (name === '__metadata__') {
        const meta = metadataSchema.safeParse(value);
        if (!meta.success) fail('__metadata__ must map strings to strings');
        else metadata = meta.data;
        continue;
      }
      const entry = entrySchema.safeParse(value);
      if (!entry.success) {
        return fail(
          `tensor "${name}": header entry must be {dtype, shape: integers >= 0, data_offsets: [begin, end]} ` +
            `(${entry.error.issues.map((i) => `${i.path.join('.') || '(entry)'}: ${i.message}`).join('; ')})`,
          name,
        );
      }
      const { dtype, shape, data_offsets: offsets } = entry.data;
      if (!isSupportedDType(dtype)) {
        // A valid file, just not one kmoe can compute with: a different hint than corruption.
        throw new SafetensorsError(
          `${path}: tensor "${name}" has dtype ${JSON.stringify(dtype)}, which kmoe does not load ` +
            `(supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`,
          { file: path, tensor: name, hint: 'convert the checkpoint to bf16, fp16 or fp32 weights' },
        );
      }
      const [begin, end] = offsets;
      if (begin > end) fail(`tensor "${name}": data_offsets [${begin}, ${end}] end before they begin`, name);
      if (end > dataSize) {
        fail(
          `tensor "${name}": data_offsets [${begin}, ${end}] reach past the end of the data section ` +
            `(${dataSize} bytes; the file is truncated or the header is wrong)`,
          name,
        );
      }
      const elements = shape.reduce((n, d) => n * d, 1);
      const expected = elements * SAFETENSORS_DTYPES[dtype].bytes;
      if (!Number.isSafeInteger(expected) || expected !== end - begin) {
        fail(
          `tensor "${name}": shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes ` +
            `but data_offsets [${begin}, ${end}] span ${end - begin}`,
          name,
        );
      }
      tensors.set(name, { name, dtype, shape, dataOffsets: [begin, end], byteLength: end - begin });
    }
    checkLayout(tensors, dataSize, fail);
    return new SafetensorsFile(path, handle, fileSize, headerBytes, metadata, tensors);
  }

  /** Header bytes plus every tensor byte read so far: lets tests prove which tensors were loaded. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.#tensors.keys()];
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.#tensors.get(name);
    if (info === undefined) {
      throw new SafetensorsError(
        `${this.path}: no tensor named "${name}" (the file holds ${this.#tensors.size})`,
        {
          file: this.path,
          tensor: name,
        },
      );
    }
    return info;
  }

  /** Reads exactly one tensor's bytes, into a fresh buffer of its own. */
  async read(name: string): Promise<StoredTensor> {
    const info = this.info(name);
    const handle = this.#handle;
    if (handle === undefined) {
      throw new SafetensorsError(`${this.path}: cannot read "${name}", the file was closed`, {
        file: this.path,
        tensor: name,
      });
    }
    // A fresh ArrayBuffer starts at offset 0, so it is aligned for any typed-array view no matter
    // where the tensor sits in the file: no second copy is needed.
    const bytes = new Uint8Array(info.byteLength);
    await readFully(this.path, handle, bytes, this.headerBytes + info.dataOffsets[0], name, (n) => {
      this.#bytesRead += n;
    });
    const n = elementCount(info.shape);
    switch (info.dtype) {
      case 'BF16':
        return makeTensor('bfloat16', info.shape, new Uint16Array(bytes.buffer, 0, n));
      case 'F16':
        return makeTensor('float16', info.shape, new Uint16Array(bytes.buffer, 0, n));
      case 'F32':
        return makeTensor('float32', info.shape, new Float32Array(bytes.buffer, 0, n));
    }
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }
}

function isSupportedDType(dtype: string): dtype is SafetensorsDType {
  return Object.hasOwn(SAFETENSORS_DTYPES, dtype);
}

/**
 * Tensors must tile the data section exactly, as the reference implementation requires: an
 * overlap means two tensors share bytes, a gap or a tail means the header and data disagree.
 */
function checkLayout(
  tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
  dataSize: number,
  fail: (message: string, tensor?: string) => never,
): void {
  const sorted = [...tensors.values()].sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let end = 0;
  let previous: SafetensorsTensorInfo | undefined;
  for (const t of sorted) {
    const [begin, tEnd] = t.dataOffsets;
    if (begin < end && previous !== undefined) {
      fail(
        `tensors "${previous.name}" [${previous.dataOffsets.join(', ')}] and "${t.name}" [${begin}, ${tEnd}] overlap`,
        t.name,
      );
    }
    if (begin > end)
      fail(`tensor "${t.name}" starts at ${begin}, leaving bytes ${end}..${begin} unaccounted for`, t.name);
    end = tEnd;
    previous = t;
  }
  if (end !== dataSize) {
    fail(`tensors cover ${end} bytes of the ${dataSize}-byte data section; the rest is unaccounted for`);
  }
}

async function readFully(
  path: string,
  handle: FileHandle,
  into: Uint8Array,
  position: number,
  tensor?: string,
  onRead?: (bytes: number) => void,
): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const length = Math.min(into.length - done, READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(into, done, length, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(
        `${path}: file ended after ${done} of ${into.length} bytes at offset ${position}` +
          `${tensor === undefined ? '' : ` reading "${tensor}"`} (was it truncated or replaced while open?)`,
        { file: path, ...(tensor === undefined ? {} : { tensor }) },
      );
    }
    done += bytesRead;
    onRead?.(bytesRead);
  }
}
