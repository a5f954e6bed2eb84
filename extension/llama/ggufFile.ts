// ggufFile.ts — a validating reader of a GGUF file's header (native/src/gguf_writer.h has the layout) by llama.cpp's
// rules, so that a truncated or foreign file gets a clear message naming it before llama.cpp sees it (llama.cpp's
// own loader fails with less to go on; the server checks each file before it loads it). Reads only the header and
// the tensor table, then checks that the file holds every tensor's bytes.
import { open } from 'node:fs/promises';

import { HqError } from '../core/errors';

const MAGIC = 0x46554747;   // "GGUF"
/** llama.cpp's limits (ggml.h GGML_MAX_NAME, GGML_MAX_DIMS): a name is shorter than 64 bytes, a tensor has <= 4 dims. */
const MAX_NAME = 64;
const MAX_DIMS = 4;

/** Bytes per block and elements per block of the ggml types llama.cpp reads (ggml.c type_traits); any other type is refused. */
const TYPE_SIZE: Record<number, [number, number]> = {
  0: [4, 1], 1: [2, 1], 2: [18, 32], 3: [20, 32], 6: [22, 32], 7: [24, 32], 8: [34, 32], 9: [36, 32],
  10: [84, 256], 11: [110, 256], 12: [144, 256], 13: [176, 256], 14: [210, 256], 15: [292, 256],
  24: [1, 1], 25: [2, 1], 26: [4, 1], 27: [8, 1], 28: [8, 1], 30: [2, 1],
};

export interface GgufHeader {
  version: number;
  /** Scalar and string metadata (arrays are summarised by their length). */
  metadata: Map<string, string | number | boolean | bigint | { array: number }>;
  tensors: { name: string; shape: number[]; type: number; offset: bigint }[];
  dataStart: number;
  /** Bytes the tensors need, from dataStart (the last tensor's end). */
  dataBytes: bigint;
  fileSize: number;
}

function bad(file: string, what: string): HqError {
  return new HqError(`${file} is not a usable GGUF file: ${what}`, { file },
    'export it again (hqlora export <run> --format gguf); a download or copy may have been cut short');
}

/** Reads and checks the header of `file`; throws HqError naming the file when it is not a complete GGUF. */
export async function readGgufHeader(file: string): Promise<GgufHeader> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new HqError(`cannot open ${file}: ${(e as Error).message}`, { file }, 'check the path (export the run to GGUF first)');
  }
  try {
    const fileSize = (await fh.stat()).size;
    let buf = Buffer.alloc(0);
    let bufStart = 0;
    let pos = 0;
    const need = async (n: number): Promise<void> => {
      while (pos + n > bufStart + buf.length) {
        if (bufStart + buf.length >= fileSize) throw bad(file, `the header ends early (at byte ${fileSize}; the file is cut short)`);
        const chunk = Buffer.alloc(Math.min(1 << 22, fileSize - bufStart - buf.length));
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, bufStart + buf.length);
        buf = Buffer.concat([buf.subarray(pos - bufStart), chunk.subarray(0, bytesRead)]);
        bufStart = pos;
        if (bytesRead === 0) throw bad(file, 'unexpected end of file');
      }
    };
    const u32 = async (): Promise<number> => { await need(4); const v = buf.readUInt32LE(pos - bufStart); pos += 4; return v; };
    const u64 = async (): Promise<bigint> => { await need(8); const v = buf.readBigUInt64LE(pos - bufStart); pos += 8; return v; };
    const str = async (): Promise<string> => {
      const n = Number(await u64());
      if (n > fileSize) throw bad(file, `a string of ${n} bytes at byte ${pos} (larger than the file)`);
      await need(n);
      const s = buf.toString('utf8', pos - bufStart, pos - bufStart + n);
      pos += n;
      return s;
    };
    const SCALAR: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
    const value = async (t: number): Promise<string | number | boolean | bigint | { array: number }> => {
      if (t === 8) return str();
      if (t === 9) {
        const et = await u32();
        const n = Number(await u64());
        for (let i = 0; i < n; i++) {
          if (et === 8) await str();
          else if (SCALAR[et] !== undefined) { await need(SCALAR[et] * Math.min(n - i, 4096)); const k = Math.min(n - i, 4096); pos += SCALAR[et] * k; i += k - 1; }
          else throw bad(file, `array of unknown value type ${et}`);
        }
        return { array: n };
      }
      const size = SCALAR[t];
      if (size === undefined) throw bad(file, `metadata value type ${t} is unknown`);
      await need(size);
      const o = pos - bufStart;
      pos += size;
      switch (t) {
        case 0: return buf.readUInt8(o);
        case 1: return buf.readInt8(o);
        case 2: return buf.readUInt16LE(o);
        case 3: return buf.readInt16LE(o);
        case 4: return buf.readUInt32LE(o);
        case 5: return buf.readInt32LE(o);
        case 6: return buf.readFloatLE(o);
        case 7: return buf.readUInt8(o) !== 0;
        case 10: return buf.readBigUInt64LE(o);
        case 11: return buf.readBigInt64LE(o);
        default: return buf.readDoubleLE(o);
      }
    };

    if (fileSize < 24) throw bad(file, `only ${fileSize} bytes`);
    const magic = await u32();
    if (magic !== MAGIC) {
      await need(0);
      throw bad(file, `it does not start with "GGUF" (found ${JSON.stringify(buf.toString('latin1', 0, 4))}); it is another kind of file`);
    }
    const version = await u32();
    if (version < 2 || version > 3) throw bad(file, `GGUF version ${version} (llama.cpp reads 2 and 3)`);
    const nTensors = await u64();
    const nKv = await u64();
    // Every key-value pair takes at least 12 bytes (an empty key and a type), every tensor info at least 24.
    if (nKv * 12n > BigInt(fileSize)) throw bad(file, `the header ends early: it claims ${nKv} metadata keys, more than its ${fileSize} bytes can hold (the file is cut short)`);
    if (nTensors * 24n > BigInt(fileSize)) throw bad(file, `the header ends early: it claims ${nTensors} tensors, more than its ${fileSize} bytes can hold (the file is cut short)`);
    const metadata: GgufHeader['metadata'] = new Map();
    const keyTypes = new Map<string, number>();
    for (let i = 0; i < Number(nKv); i++) {
      const at = pos;
      const k = await str();
      if (metadata.has(k)) throw bad(file, `the metadata key "${k.slice(0, 80)}" appears twice (at byte ${at})`);
      const t = await u32();
      keyTypes.set(k, t);
      metadata.set(k, await value(t));
    }
    let alignment = 32;
    if (metadata.has('general.alignment')) {
      const a = metadata.get('general.alignment');
      if (keyTypes.get('general.alignment') !== 4 || typeof a !== 'number') throw bad(file, 'general.alignment is not a uint32');
      if (a === 0 || (a & (a - 1)) !== 0) throw bad(file, `general.alignment ${a} is not a power of 2`);
      alignment = a;
    }
    const tensors: GgufHeader['tensors'] = [];
    const names = new Set<string>();
    const sizes: bigint[] = [];
    for (let i = 0; i < Number(nTensors); i++) {
      const name = await str();
      if (Buffer.byteLength(name) >= MAX_NAME) throw bad(file, `tensor ${i}'s name "${name.slice(0, 80)}…" is ${Buffer.byteLength(name)} bytes (llama.cpp allows ${MAX_NAME - 1})`);
      if (names.has(name)) throw bad(file, `the tensor name "${name}" appears twice`);
      names.add(name);
      const nd = await u32();
      if (nd > MAX_DIMS) throw bad(file, `tensor ${name} has ${nd} dimensions (at most ${MAX_DIMS})`);
      const shape: bigint[] = [];
      for (let d = 0; d < nd; d++) shape.push(await u64());
      const elements = shape.reduce((x, y) => x * y, 1n);
      if (shape.some((n) => n >= 1n << 63n) || elements >= 1n << 63n) throw bad(file, `tensor ${name} has shape [${shape.join(', ')}]: too many elements`);
      const type = await u32();
      const ts = TYPE_SIZE[type];
      if (!ts) throw bad(file, `tensor ${name} has ggml type ${type}, which llama.cpp does not know`);
      if ((shape[0] ?? 1n) % BigInt(ts[1]) !== 0n) throw bad(file, `tensor ${name} has ${shape[0]} elements per row, not a multiple of its type's block of ${ts[1]}`);
      tensors.push({ name, shape: shape.map(Number), type, offset: await u64() });
      sizes.push((elements / BigInt(ts[1])) * BigInt(ts[0]));
    }
    const dataStart = Math.ceil(pos / alignment) * alignment;
    // The data section: every tensor at the aligned end of the one before it, as llama.cpp requires.
    let end = 0n;
    let dataBytes = 0n;
    const align = BigInt(alignment);
    tensors.forEach((t, i) => {
      if (t.offset !== end) throw bad(file, `tensor ${t.name} is at data offset ${t.offset}, but the tensors before it end at ${end} (aligned to ${alignment})`);
      dataBytes = end + (sizes[i] ?? 0n);
      end += (((sizes[i] ?? 0n) + align - 1n) / align) * align;
    });
    if (BigInt(dataStart) + dataBytes > BigInt(fileSize)) {
      throw bad(file, `the tensors need ${BigInt(dataStart) + dataBytes} bytes but the file has ${fileSize} (it is cut short)`);
    }
    return { version, metadata, tensors, dataStart, dataBytes, fileSize };
  } finally {
    await fh.close();
  }
}

/** llama.cpp architectures the bundled node-llama-cpp 3.21.1 runs and H-QLoRA exports. */
export const RUNNABLE_ARCHITECTURES = ['llama', 'gemma', 'gemma2', 'gemma3', 'qwen2', 'qwen3', 'phi3'];

/** readGgufHeader plus a check that llama.cpp can run the architecture (adapters: any). */
export async function checkGgufFile(file: string): Promise<GgufHeader> {
  const h = await readGgufHeader(file);
  const arch = h.metadata.get('general.architecture');
  if (typeof arch !== 'string') throw bad(file, 'it has no general.architecture key');
  if (h.metadata.get('general.type') !== 'adapter' && !RUNNABLE_ARCHITECTURES.includes(arch)) {
    throw new HqError(`${file}: architecture "${arch}" is not one the playground's llama.cpp can run (general.architecture)`,
      { file, key: 'general.architecture' }, `supported: ${RUNNABLE_ARCHITECTURES.join(', ')}`);
  }
  return h;
}
