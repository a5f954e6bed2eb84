// tokenfile.ts — the .hqtok token file (docs/CONTRACTS.md §3), version 1 (or 2 when packed), little-endian:
//
//   0   8 B             magic 48 51 54 4F 4B 00 00 01 ("HQTOK\0\0\1")
//   8   u32             format version = 1, or 2 for packed sequences
//   12  u32             H = byte length of the header JSON
//   16  H B             UTF-8 header JSON, then 0x20 padding to a multiple of 8        -> P = round8(16 + H)
//   P   u64 x (n+1)     example start offsets into the token arrays (0 .. n_tokens, non-decreasing)
//   ..  u32 x n_tokens  token ids (< vocab_size)
//   ..  u8  x n_tokens  loss mask (1 = training target)
//   ..  0-7 B           zero padding to a multiple of 8; version 1 ends here
//   ..  u64 x (d+1)     version 2 only: document start offsets (0 .. n_tokens, every example offset among them);
//                       an example is then a packed sequence of documents, each trained as if alone (the trainer's
//                       document mask, RoPE positions from 0 per document, no loss on a document's first token)
//
// The writer is atomic (temp file in the same folder, fsync, rename, fsync of the folder), so a reader never sees
// a half-written file. The reader checks the layout as strictly as the trainer does; tests use it.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

import type { TokenFileHeader as TokenFileHeaderSchema } from '../../schemas/generated/token-file';
import { HqError } from '../core/errors';

export const HQTOK_MAGIC = Buffer.from([0x48, 0x51, 0x54, 0x4f, 0x4b, 0x00, 0x00, 0x01]);
export const HQTOK_VERSION = 1;
/** The version of packed files (documents present). */
export const HQTOK_PACKED_VERSION = 2;

/** The header as this writer fills it: the generated schema type (schemas/token-file.schema.json) with every key present (n_documents in version 2 only). */
export type TokenFileHeader = Required<Omit<TokenFileHeaderSchema, 'source' | 'n_documents'>> &
  { n_documents?: number; source: Required<NonNullable<TokenFileHeaderSchema['source']>> };

export interface TokenData {
  /** n_examples + 1 offsets; offsets[0] = 0, last = ids.length. */
  offsets: number[];
  ids: Uint32Array;
  mask: Uint8Array;
  /** Packed sequences: n_documents + 1 document start offsets, every example offset among them (absent: unpacked). */
  documents?: number[];
}

const round8 = (x: number): number => Math.ceil(x / 8) * 8;

/** The exact bytes of a token file. `header` n_examples / n_tokens are taken from `data`. */
export function encodeTokenFile(header: Omit<TokenFileHeader, 'n_examples' | 'n_tokens' | 'version' | 'n_documents'>, data: TokenData): Buffer {
  const nEx = data.offsets.length - 1, nTok = data.ids.length;
  if (nEx < 0 || data.offsets[0] !== 0 || data.offsets[nEx] !== nTok || data.mask.length !== nTok) {
    throw new Error(`token data is inconsistent: ${nEx + 1} offsets ending at ${data.offsets[nEx]}, ${nTok} ids, ${data.mask.length} mask bytes`);
  }
  const docs = data.documents;
  if (docs) checkDocuments(docs, data.offsets, nTok);
  const version = docs ? HQTOK_PACKED_VERSION : HQTOK_VERSION;
  // Fixed key order (the contract's order) so files are byte-reproducible.
  const h: TokenFileHeader = {
    format: 'hqtok', version, n_examples: nEx, ...(docs ? { n_documents: docs.length - 1 } : {}), n_tokens: nTok,
    vocab_size: header.vocab_size, bos_id: header.bos_id, eos_id: header.eos_id, pad_id: header.pad_id,
    tokenizer_sha256: header.tokenizer_sha256, source: header.source, created_by: header.created_by,
  };
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  const P = round8(16 + json.length);
  const idsAt = P + 8 * (nEx + 1), maskAt = idsAt + 4 * nTok, docsAt = round8(maskAt + nTok);
  const end = docsAt + (docs ? 8 * docs.length : 0);
  const buf = Buffer.alloc(end); // zero-filled: the trailing padding is already 0
  HQTOK_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(version, 8);
  buf.writeUInt32LE(json.length, 12);
  json.copy(buf, 16);
  buf.fill(0x20, 16 + json.length, P);
  for (let i = 0; i <= nEx; i++) {
    const o = data.offsets[i]!;
    if (i > 0 && o < data.offsets[i - 1]!) throw new Error(`offsets decrease at example ${i - 1}`);
    buf.writeBigUInt64LE(BigInt(o), P + 8 * i);
  }
  for (let t = 0; t < nTok; t++) {
    const id = data.ids[t]!;
    if (id >= header.vocab_size) throw new Error(`token id ${id} at position ${t} is not below vocab_size ${header.vocab_size}`);
    buf.writeUInt32LE(id, idsAt + 4 * t);
  }
  Buffer.from(data.mask.buffer, data.mask.byteOffset, nTok).copy(buf, maskAt);
  docs?.forEach((o, i) => buf.writeBigUInt64LE(BigInt(o), docsAt + 8 * i));
  return buf;
}

/** Document offsets: first 0, last nTok, non-decreasing, every example offset among them (no document spans two). */
function checkDocuments(docs: number[], offsets: number[], nTok: number): void {
  if (docs[0] !== 0 || docs[docs.length - 1] !== nTok) throw new Error(`document offsets must run from 0 to ${nTok}`);
  const starts = new Set(docs);
  for (let i = 1; i < docs.length; i++) if (docs[i]! < docs[i - 1]!) throw new Error(`document offsets decrease at document ${i - 1}`);
  for (const o of offsets) if (!starts.has(o)) throw new Error(`example offset ${o} is no document start: a document spans two examples`);
}

/**
 * Writes `bytes` to `file` atomically: `.<name>.tmp-<random>` in the same folder, fsync, rename, fsync the folder.
 * When `signal` is aborted before the rename, the temp file is removed and nothing appears at `file`.
 */
export async function writeFileAtomic(file: string, bytes: Buffer, signal?: AbortSignal): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  if (signal?.aborted) {
    await unlink(tmp).catch(() => undefined);
    throw cancelled();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } catch {
    // Some filesystems (and Windows) cannot fsync a directory; the rename itself is still atomic.
  } finally {
    await dh.close();
  }
}

export function cancelled(): HqError {
  return new HqError('data preparation was cancelled; no token files were written', {},
    'start the run again to prepare the data');
}

export async function writeTokenFile(file: string, header: Omit<TokenFileHeader, 'n_examples' | 'n_tokens' | 'version' | 'n_documents'>,
  data: TokenData, signal?: AbortSignal): Promise<void> {
  await writeFileAtomic(file, encodeTokenFile(header, data), signal);
}

export interface TokenFile extends TokenData {
  header: TokenFileHeader;
}

/** Parses and validates a token file's bytes; errors say which byte offset is wrong. */
export function decodeTokenFile(buf: Buffer, file = '<buffer>'): TokenFile {
  const bad = (msg: string, offset: number): HqError =>
    new HqError(`${msg} (byte offset ${offset})`, { file }, 're-create the token file (run the data preparation again)');
  if (buf.length < 16) throw bad(`file is ${buf.length} bytes, shorter than the 16-byte preamble`, buf.length);
  if (!buf.subarray(0, 8).equals(HQTOK_MAGIC)) throw bad('bad magic: not an .hqtok token file', 0);
  const version = buf.readUInt32LE(8);
  if (version !== HQTOK_VERSION && version !== HQTOK_PACKED_VERSION) throw bad(`unsupported format version ${version}`, 8);
  const H = buf.readUInt32LE(12);
  if (16 + H > buf.length) throw bad(`header length ${H} runs past the end of the file`, 12);
  let header: TokenFileHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 16, 16 + H)) as TokenFileHeader;
  } catch (err) {
    throw bad(`header is not valid JSON: ${(err as Error).message}`, 16);
  }
  if (header.format !== 'hqtok' || header.version !== version) throw bad(`header is not an hqtok version ${version} header`, 16);
  const nDocs = version === HQTOK_PACKED_VERSION ? header.n_documents : undefined;
  if (version === HQTOK_PACKED_VERSION && (!Number.isInteger(nDocs) || nDocs! < header.n_examples)) {
    throw bad(`header n_documents ${nDocs} is not an integer >= n_examples`, 16);
  }
  const P = round8(16 + H);
  for (let o = 16 + H; o < P; o++) if (buf[o] !== 0x20) throw bad('header padding byte is not 0x20', o);
  const nEx = header.n_examples, nTok = header.n_tokens;
  const idsAt = P + 8 * (nEx + 1), maskAt = idsAt + 4 * nTok, docsAt = round8(maskAt + nTok);
  const end = docsAt + (nDocs !== undefined ? 8 * (nDocs + 1) : 0);
  if (buf.length !== end) throw bad(`file is ${buf.length} bytes, the header requires exactly ${end}`, Math.min(buf.length, end));
  const offsets: number[] = [];
  for (let i = 0; i <= nEx; i++) {
    const o = Number(buf.readBigUInt64LE(P + 8 * i));
    if ((i === 0 && o !== 0) || o > nTok || (i > 0 && o < offsets[i - 1]!)) throw bad(`bad offset ${o} for example ${i}`, P + 8 * i);
    offsets.push(o);
  }
  if (offsets[nEx] !== nTok) throw bad(`last offset ${offsets[nEx]} is not n_tokens ${nTok}`, P + 8 * nEx);
  const ids = new Uint32Array(nTok);
  for (let t = 0; t < nTok; t++) {
    ids[t] = buf.readUInt32LE(idsAt + 4 * t);
    if (ids[t]! >= header.vocab_size) throw bad(`token id ${ids[t]} is not below vocab_size ${header.vocab_size}`, idsAt + 4 * t);
  }
  const mask = new Uint8Array(buf.subarray(maskAt, maskAt + nTok));
  for (let t = 0; t < nTok; t++) if (mask[t]! > 1) throw bad(`mask byte ${mask[t]} is not 0 or 1`, maskAt + t);
  for (let o = maskAt + nTok; o < docsAt; o++) if (buf[o] !== 0) throw bad('trailing padding byte is not 0', o);
  if (nDocs === undefined) return { header, offsets, ids, mask };
  const documents: number[] = [];
  for (let i = 0; i <= nDocs; i++) documents.push(Number(buf.readBigUInt64LE(docsAt + 8 * i)));
  try {
    checkDocuments(documents, offsets, nTok);
  } catch (err) {
    throw bad((err as Error).message, docsAt);
  }
  return { header, offsets, ids, mask, documents };
}

export async function readTokenFile(file: string): Promise<TokenFile> {
  return decodeTokenFile(await readFile(file), file);
}
