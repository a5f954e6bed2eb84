// golden-adapter.ts — the golden hierarchical adapter (test/golden/<model>.safetensors: levels 4/2/2, scales 2/1/3,
// B != 0) re-packed into an adapter folder (adapter.safetensors + adapter_metadata.json naming the fixture as base),
// for the export tests (addon.test.ts, cli-export.test.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

interface StEntry { dtype: string; shape: number[]; data_offsets: [number, number] }

/** Writes <dir>/adapter.safetensors + adapter_metadata.json from the golden file of `model` (prefix '' or 'final.'). */
export function writeGoldenAdapter(root: string, dir: string, model = 'tiny-llama', prefix = ''): void {
  const fixture = path.join(root, 'test', 'fixtures', 'models', model);
  const buf = readFileSync(path.join(root, 'test', 'golden', `${model}.safetensors`));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const meta = header.__metadata__ as Record<string, string>;
  const names = Object.keys(header)
    .filter((k) => k.startsWith(`${prefix}model.layers.`) && k.includes('.levels.'))
    .sort();
  const out: Record<string, unknown> = {
    __metadata__: { format: 'pt', 'hqlora.version': '1', 'hqlora.levels': meta['hqlora.levels'],
      'hqlora.target_modules': meta['hqlora.target_modules'], 'hqlora.rslora': meta['hqlora.rslora'] },
  };
  const parts: Buffer[] = [];
  let off = 0;
  for (const k of names) {
    const e = header[k] as StEntry;
    const bytes = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    out[k.slice(prefix.length)] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  let h = JSON.stringify(out);
  while (h.length % 8) h += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'adapter.safetensors'), Buffer.concat([len, Buffer.from(h), ...parts]));
  writeFileSync(path.join(dir, 'adapter_metadata.json'), JSON.stringify({
    format: 'hqlora-adapter', version: 1, base_model: { path: fixture, architecture: (JSON.parse(readFileSync(path.join(fixture, 'config.json'), 'utf8')) as { model_type: string }).model_type, config_sha256: null },
  }));
}
