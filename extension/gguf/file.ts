// file.ts — a validating reader of a GGUF file's header (native/src/gguf_writer.h has the layout), so that a
// truncated or foreign file gets a clear message naming it before llama.cpp sees it (llama.cpp's own loader fails
// with less to go on). Reads only the header and the tensor table, then checks that the file holds every tensor's
// bytes.
import { open } from 'node:fs/promises';

import { HqError } from '../core/errors';

const MAGIC = 0x46554747;   // "GGUF"

/** Bytes per block and elements per block of the ggml types (ggml.c type_traits); unknown types skip the size check. */
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
  /** Bytes the tensors need (when every type is known), from dataStart. */
  dataBytes: bigint | null;
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
    const nTensors = Number(await u64());
    const nKv = Number(await u64());
    const metadata: GgufHeader['metadata'] = new Map();
    for (let i = 0; i < nKv; i++) {
      const k = await str();
      metadata.set(k, await value(await u32()));
    }
    const tensors: GgufHeader['tensors'] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = await str();
      const nd = await u32();
      if (nd > 8) throw bad(file, `tensor ${name} has ${nd} dimensions`);
      const shape: number[] = [];
      for (let d = 0; d < nd; d++) shape.push(Number(await u64()));
      tensors.push({ name, shape, type: await u32(), offset: await u64() });
    }
    const alignment = Number(metadata.get('general.alignment') ?? 32);
    const dataStart = Math.ceil(pos / alignment) * alignment;
    let dataBytes: bigint | null = 0n;
    for (const t of tensors) {
      const ts = TYPE_SIZE[t.type];
      if (!ts || dataBytes === null) { dataBytes = null; continue; }
      const n = t.shape.reduce((a, b) => a * b, 1);
      const end = t.offset + BigInt(Math.ceil(n / ts[1]) * ts[0]);
      if (end > dataBytes) dataBytes = end;
    }
    if (dataBytes !== null && BigInt(dataStart) + dataBytes > BigInt(fileSize)) {
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
