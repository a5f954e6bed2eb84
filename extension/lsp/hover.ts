// hover.ts — hover on a key or value: the schema's documentation of that key, plus the values computed from the
// config and the model it names (trainable parameters per level and in total, effective batch, tokens per step,
// step count, the memory estimate against the detected GPU, the resolved model folder).
import { type Hover, MarkupKind, type Position } from 'vscode-languageserver';

import type { ConfigDoc, KeyPath } from './document';
import { formatBytes, formatCount } from '../model/memory';
import { schemaAt, schemaMarkdown } from './schemanav';
import { type Facts, batchFormula } from './semantic';

function section(path: KeyPath): string {
  return typeof path[0] === 'string' ? path[0] : '';
}

/** Markdown lines of computed values relevant to the key at `path`. */
export function computedLines(path: KeyPath, f: Facts): string[] {
  const out: string[] = [];
  const sec = section(path);
  const key = path.filter((p) => typeof p === 'string').join('.');
  if (sec === 'model' && f.model) {
    const loc = f.model.location;
    if (loc.kind === 'cache') out.push(`- resolved from the Hugging Face cache: \`${loc.dir}\` (commit ${loc.commit.slice(0, 12)})`);
    if (loc.kind === 'folder') out.push(`- folder: \`${loc.dir}\``);
    const info = f.model.info;
    if (info) {
      const d = info.dims;
      out.push(`- architecture: ${info.architecture}; ${d.layers} layers, hidden ${d.hidden}, MLP ${d.intermediate}, ` +
        `${d.heads} heads (${d.kvHeads} KV, head dim ${d.headDim}), vocabulary ${d.vocab}`);
    }
  }
  if ((sec === 'adapter' || sec === 'model') && f.perLevelParams && f.trainableParams !== undefined) {
    f.ranks.forEach((r, i) => out.push(`- level ${i}: rank ${r}, ${formatCount(f.perLevelParams![i]!)} trainable parameters`));
    out.push(`- total: rank ${f.ranks.reduce((a, b) => a + b, 0)}, ${formatCount(f.trainableParams)} trainable parameters ` +
      `over ${f.modules.length} module(s) per layer`);
  }
  if (sec === 'training' || sec === 'data' || key === '') {
    out.push(`- effective batch: ${batchFormula(f)} = ${f.effectiveBatch} examples per step`);
    out.push(`- tokens per step: at most ${f.tokensPerStep.toLocaleString('en-US')} (${f.effectiveBatch} x ${f.seqLen} tokens)`);
    if (f.examples !== undefined) out.push(`- training examples: ${f.examples}`);
    if (f.totalSteps !== undefined) out.push(`- optimizer steps: ${f.totalSteps}`);
  }
  if ((sec === 'hardware' || sec === 'distributed') && f.world > 1) {
    out.push(`- data parallel: ${f.world} ranks; global batch ${batchFormula(f)} = ${f.effectiveBatch} examples per step; the memory below is per rank`);
  }
  if ((sec === 'hardware' || sec === 'training' || sec === 'quantization' || sec === 'model') && f.memory) {
    const m = f.memory;
    out.push(`- estimated memory: **${formatBytes(m.total)}** = weights ${formatBytes(m.weights)} + adapters ${formatBytes(m.adapters)} + ` +
      `grads ${formatBytes(m.gradients)} + AdamW ${formatBytes(m.optimizer)} + activations ${formatBytes(m.activations)}` +
      (m.runtime ? ` + CUDA runtime ${formatBytes(m.runtime)}` : ''));
    if (f.memoryBudget) out.push(`- available: ${formatBytes(f.memoryBudget.bytes)} (${f.memoryBudget.what})`);
  }
  return out;
}

export function hover(cd: ConfigDoc, pos: Position, facts: Facts | null): Hover | null {
  const at = cd.pathAt(cd.text.offsetAt(pos));
  if (at.path.length === 0 || !at.node?.range) return null;
  const last = at.path[at.path.length - 1]!;
  const named = [...at.path].reverse().find((p): p is string => typeof p === 'string') ?? '';
  const doc = schemaMarkdown(typeof last === 'number' ? `${named}[${last}]` : named, schemaAt(at.path));
  const computed = facts ? computedLines(at.path, facts) : [];
  if (!doc && computed.length === 0) return null;
  const value = [doc, ...(computed.length ? ['', '---', '', ...computed] : [])].join('\n');
  const r = at.node.range;
  return { contents: { kind: MarkupKind.Markdown, value }, range: cd.range(r[0], r[1]) };
}
