// gguf-file.test.ts — the GGUF header reader (extension/llama/ggufFile.ts) against the format's rules as llama.cpp
// enforces them, and fuzzed: a valid file built here byte by byte reads back exactly; each rule broken on its own is
// refused with a message naming the file and the rule; and thousands of seeded random mutations (bit flips, cuts,
// inserted and deleted bytes) of the file either read as a header that keeps every rule or are refused with an
// HqError naming the file, never another exception and never a hang.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type GgufHeader, readGgufHeader } from '../../extension/llama/ggufFile';
import { HqError } from '../../extension/core/errors';

type Kv = [key: string, type: number, value: Buffer];
type Tensor = { name: string; shape: bigint[]; type: number; offset: bigint; bytes: number };

const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v: bigint | number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const str = (s: string): Buffer => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
const f32s = (xs: number[]): Buffer => { const b = Buffer.alloc(4 * xs.length); xs.forEach((x, i) => b.writeFloatLE(x, 4 * i)); return b; };

/** A GGUF v3 file: magic, counts, key-values, tensor infos, padding to `alignment`, then the data. */
function gguf(o: { version?: number; kv: Kv[]; tensors: Tensor[]; alignment?: number; data?: number; nKv?: bigint; nTensors?: bigint }): Buffer {
  const head = [Buffer.from('GGUF'), u32(o.version ?? 3), u64(o.nTensors ?? BigInt(o.tensors.length)), u64(o.nKv ?? BigInt(o.kv.length))];
  for (const [k, t, v] of o.kv) head.push(str(k), u32(t), v);
  for (const t of o.tensors) head.push(str(t.name), u32(t.shape.length), ...t.shape.map(u64), u32(t.type), u64(t.offset));
  let h = Buffer.concat(head);
  const a = o.alignment ?? 32;
  h = Buffer.concat([h, Buffer.alloc((a - (h.length % a)) % a)]);
  const dataLen = o.data ?? o.tensors.reduce((end, t) => Math.max(end, Number(t.offset) + t.bytes), 0);
  return Buffer.concat([h, Buffer.alloc(dataLen, 7)]);
}

const KV: Kv[] = [
  ['general.architecture', 8, str('llama')],
  ['general.alignment', 4, u32(32)],
  ['llama.block_count', 4, u32(2)],
  ['llama.rope.freq_base', 6, f32s([10000])],
  ['general.size', 10, u64(123456789)],
  ['tokenizer.ggml.add_bos_token', 7, Buffer.from([1])],
  ['tokenizer.ggml.tokens', 9, Buffer.concat([u32(8), u64(3), str('<s>'), str('a'), str('ü')])],
  ['tokenizer.ggml.scores', 9, Buffer.concat([u32(6), u64(3), f32s([0, -1, -2])])],
];
// f32 [8, 4] = 128 bytes at 0; q8_0 [64, 2] = 4 blocks of 34 = 136 bytes at 128 (aligned end of the first).
const TENSORS: Tensor[] = [
  { name: 'token_embd.weight', shape: [8n, 4n], type: 0, offset: 0n, bytes: 128 },
  { name: 'blk.0.attn_q.weight', shape: [64n, 2n], type: 8, offset: 128n, bytes: 136 },
];

/** A seeded PRNG (mulberry32), so a failing case can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The rules a header that was read must keep. */
function checkInvariants(h: GgufHeader, size: number): void {
  assert.ok(h.version === 2 || h.version === 3);
  assert.ok(h.dataStart % 32 === 0 || typeof h.metadata.get('general.alignment') === 'number');
  assert.ok(BigInt(h.dataStart) + h.dataBytes <= BigInt(size));
  assert.equal(new Set(h.tensors.map((t) => t.name)).size, h.tensors.length);
  for (const t of h.tensors) assert.ok(t.shape.length <= 4 && Buffer.byteLength(t.name) < 64);
}

describe('GGUF header reader: the format\'s rules, fuzzed', () => {
  let tmp: string;
  before(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'hq-gguf-fuzz-')); });
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const write = (name: string, b: Buffer): string => { const f = path.join(tmp, name); writeFileSync(f, b); return f; };

  it('a valid file reads back exactly', async () => {
    const f = write('valid.gguf', gguf({ kv: KV, tensors: TENSORS }));
    const h = await readGgufHeader(f);
    assert.equal(h.version, 3);
    assert.equal(h.metadata.get('general.architecture'), 'llama');
    assert.equal(h.metadata.get('llama.block_count'), 2);
    assert.equal(h.metadata.get('llama.rope.freq_base'), 10000);
    assert.equal(h.metadata.get('general.size'), 123456789n);
    assert.equal(h.metadata.get('tokenizer.ggml.add_bos_token'), true);
    assert.deepEqual(h.metadata.get('tokenizer.ggml.tokens'), { array: 3 });
    assert.deepEqual(h.tensors.map((t) => [t.name, t.shape, t.type, t.offset]), TENSORS.map((t) => [t.name, t.shape.map(Number), t.type, t.offset]));
    assert.equal(h.dataStart % 32, 0);
    assert.equal(h.dataBytes, 128n + 136n);
  });

  const broken: [string, () => Buffer, RegExp][] = [
    ['version 1', () => gguf({ version: 1, kv: KV, tensors: TENSORS }), /GGUF version 1/],
    ['a duplicate key', () => gguf({ kv: [...KV, ['llama.block_count', 4, u32(3)]], tensors: TENSORS }), /key "llama\.block_count" appears twice/],
    ['alignment not a power of 2', () => gguf({ kv: [['general.alignment', 4, u32(24)]], tensors: [], alignment: 8 }), /general\.alignment 24 is not a power of 2/],
    ['alignment not a uint32', () => gguf({ kv: [['general.alignment', 10, u64(32)]], tensors: [] }), /general\.alignment is not a uint32/],
    ['a tensor name of 64 bytes', () => gguf({ kv: KV, tensors: [{ ...TENSORS[0] as Tensor, name: 'x'.repeat(64) }] }), /is 64 bytes \(llama\.cpp allows 63\)/],
    ['a duplicate tensor name', () => gguf({ kv: KV, tensors: [TENSORS[0] as Tensor, { ...TENSORS[1] as Tensor, name: 'token_embd.weight' }] }), /tensor name "token_embd\.weight" appears twice/],
    ['5 dimensions', () => gguf({ kv: KV, tensors: [{ ...TENSORS[0] as Tensor, shape: [2n, 2n, 2n, 2n, 2n] }] }), /has 5 dimensions \(at most 4\)/],
    ['an unknown ggml type', () => gguf({ kv: KV, tensors: [{ ...TENSORS[0] as Tensor, type: 4 }] }), /ggml type 4, which llama\.cpp does not know/],
    ['a row that is not whole blocks', () => gguf({ kv: KV, tensors: [{ ...TENSORS[1] as Tensor, shape: [48n, 2n], offset: 0n }] }), /48 elements per row, not a multiple of its type's block of 32/],
    ['an element count that overflows', () => gguf({ kv: KV, tensors: [{ ...TENSORS[0] as Tensor, shape: [1n << 32n, 1n << 32n] }] }), /too many elements/],
    ['a tensor not at the aligned end of the one before', () => gguf({ kv: KV, tensors: [TENSORS[0] as Tensor, { ...TENSORS[1] as Tensor, offset: 130n }] }), /at data offset 130, but the tensors before it end at 128/],
    ['a cut data section', () => gguf({ kv: KV, tensors: TENSORS, data: 200 }), /need \d+ bytes but the file has \d+ \(it is cut short\)/],
    ['more keys than the file can hold', () => gguf({ kv: KV, tensors: TENSORS, nKv: 1n << 60n }), /claims 1152921504606846976 metadata keys/],
    ['more tensors than the file can hold', () => gguf({ kv: KV, tensors: TENSORS, nTensors: 1n << 40n }), /claims 1099511627776 tensors/],
    ['a string longer than the file', () => Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), u64(1n << 50n), Buffer.alloc(16)]), /a string of \d+ bytes at byte 32 \(larger than the file\)/],
    ['an unknown value type', () => gguf({ kv: [['a.b', 13, u32(0)]], tensors: [] }), /metadata value type 13 is unknown/],
    ['a nested array', () => gguf({ kv: [['a.b', 9, Buffer.concat([u32(9), u64(1), u32(4), u64(0)])]], tensors: [] }), /array of unknown value type 9/],
  ];
  for (const [what, make, message] of broken) {
    it(`refused: ${what}`, async () => {
      const f = write(`${what.replace(/\W+/g, '-')}.gguf`, make());
      await assert.rejects(readGgufHeader(f), (e: Error) => {
        assert.ok(e instanceof HqError, `${e.name}: ${e.message}`);
        assert.ok(e.message.startsWith(`${f} is not a usable GGUF file: `), e.message);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('3000 seeded random mutations: a header that keeps the rules, or an HqError naming the file', async () => {
    const good = gguf({ kv: KV, tensors: TENSORS });
    const headerEnd = good.length - 264;
    const f = path.join(tmp, 'fuzz.gguf');
    let read = 0;
    let refused = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const r = rng(seed);
      let b = Buffer.from(good);
      const n = 1 + Math.floor(r() * 4);
      for (let m = 0; m < n; m++) {
        const at = Math.floor(r() * (r() < 0.9 ? headerEnd : b.length));
        const kind = r();
        if (kind < 0.5) b[at] = (b[at] ?? 0) ^ (1 << Math.floor(r() * 8));
        else if (kind < 0.65) b[at] = Math.floor(r() * 256);
        else if (kind < 0.75) b = b.subarray(0, at);
        else if (kind < 0.88) b = Buffer.concat([b.subarray(0, at), Buffer.alloc(1 + Math.floor(r() * 8), Math.floor(r() * 256)), b.subarray(at)]);
        else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(r() * 8))]);
      }
      writeFileSync(f, b);
      const t0 = performance.now();
      try {
        checkInvariants(await readGgufHeader(f), b.length);
        read++;
      } catch (e) {
        if (!(e instanceof HqError) || !e.message.startsWith(`${f} `)) {
          assert.fail(`seed ${seed}: ${(e as Error).name}: ${(e as Error).message}`);
        }
        refused++;
      }
      assert.ok(performance.now() - t0 < 2000, `seed ${seed} took ${(performance.now() - t0).toFixed(0)} ms`);
    }
    assert.ok(read > 100 && refused > 1000, `${read} read, ${refused} refused`);
  });
});
