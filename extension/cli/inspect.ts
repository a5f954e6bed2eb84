// inspect.ts — `hqlora inspect <file.safetensors | model-folder>`: the native parser's view of the weights
// (`hqlora-train inspect`, one JSON object), printed as a table of dtype, shape and bytes per tensor.
import path from 'node:path';

import { formatBytes } from '../core/format';
import { findTrainer, inspectWithTrainer } from '../job/trainer';
import { warn } from './io';

export interface InspectOptions {
  target: string;
  json: boolean;
  packageRoot: string;
  trainerSetting: string | undefined;
}

interface TensorRow {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
  file?: string;
}

export async function inspectCommand(opts: InspectOptions): Promise<number> {
  const trainer = await findTrainer({ packageRoot: opts.packageRoot, setting: opts.trainerSetting, onWarning: warn });
  const info = await inspectWithTrainer(trainer.path, path.resolve(opts.target));
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(renderInspect(info));
  return 0;
}

/** The text report for one `hqlora-train inspect` object (file or folder form, CONTRACTS §1). */
export function renderInspect(info: Record<string, unknown>): string {
  const lines: string[] = [];
  const tensors = (Array.isArray(info.tensors) ? info.tensors : []) as TensorRow[];
  const total = tensors.reduce((s, t) => s + (Number(t.bytes) || 0), 0);
  lines.push(text(info.file ?? info.dir));
  if (typeof info.header_bytes === 'number') lines.push(`  header     ${info.header_bytes} bytes`);
  lines.push(`  tensors    ${tensors.length}, ${formatBytes(total)}`);

  const config = info.config;
  if (config && typeof config === 'object') {
    lines.push('  config');
    for (const [k, v] of Object.entries(config)) {
      if (v !== null && typeof v === 'object') continue;
      lines.push(`    ${k.padEnd(26)} ${text(v)}`);
    }
  }
  if (Array.isArray(info.shards)) {
    lines.push('  shards');
    for (const s of info.shards as Record<string, unknown>[]) {
      lines.push(`    ${path.basename(text(s.file))}  ${text(s.n_tensors)} tensors, header ${text(s.header_bytes)} bytes`);
    }
  }
  const metadata = info.metadata;
  if (metadata && typeof metadata === 'object' && Object.keys(metadata).length > 0) {
    lines.push('  metadata');
    for (const [k, v] of Object.entries(metadata)) lines.push(`    ${k} = ${text(v)}`);
  }

  const multiFile = new Set(tensors.map((t) => t.file).filter(Boolean)).size > 1;
  const rows = tensors.map((t) => [
    t.name,
    t.dtype,
    `[${t.shape.join(', ')}]`,
    formatBytes(Number(t.bytes) || 0),
    ...(multiFile ? [path.basename(t.file ?? '')] : []),
  ]);
  const header = ['name', 'dtype', 'shape', 'bytes', ...(multiFile ? ['file'] : [])];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]): string => `  ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()}`;
  lines.push('', fmt(header), ...rows.map(fmt));
  return `${lines.join('\n')}\n`;
}

/** A JSON value as display text: strings as they are, everything else as JSON; `?` when absent. */
function text(v: unknown): string {
  if (v === undefined) return '?';
  return typeof v === 'string' ? v : JSON.stringify(v);
}
