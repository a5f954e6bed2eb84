// generate.ts — `hqlora generate <run> --prompt TEXT`: one answer of the tuned model (or --base) through llama.cpp
// (the playground server, node-llama-cpp) from the run's cached GGUF (made and verified on first use). Greedy unless
// --temperature; --seed makes sampling reproducible. --json prints {text, tokens, stopReason, ttftMs, ...}.
import path from 'node:path';

import { ensureRunGguf } from '../gguf/cache';
import { type HqloraAddon, isNativeError, loadAddon, toHqError } from '../native/addon';
import { PlaygroundClient } from '../llama/client';
import { UsageError } from './args';

export const GENERATE_USAGE = `  hqlora generate <run-folder | adapter-folder> --prompt TEXT [--max-tokens N] [--temperature T] [--seed S]
                  [--top-k K] [--top-p P] [--base] [--json]
      One answer of the tuned model through llama.cpp (node-llama-cpp), streamed to stdout; --base answers with the
      base model. Greedy by default. The GGUF (f16) is exported into the run folder on first use and reused.
`;

interface Parsed { positionals: string[]; flags: Map<string, string | true> }

export function parseWords(words: string[], valued: string[], bare: string[], command: string): Parsed {
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i] ?? '';
    if (!w.startsWith('--')) {
      positionals.push(w);
      continue;
    }
    if (valued.includes(w)) {
      const v = words[++i];
      if (v === undefined) throw new UsageError(`${w} needs a value`);
      flags.set(w, v);
    } else if (bare.includes(w)) flags.set(w, true);
    else throw new UsageError(`unknown option ${w} for hqlora ${command} (allowed: ${[...valued, ...bare].join(', ')})`);
  }
  return { positionals, flags };
}

export function numberOf(p: Parsed, name: string, integer: boolean): number | undefined {
  const v = p.flags.get(name);
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < 0) {
    throw new UsageError(`${name} must be a ${integer ? 'whole ' : ''}number >= 0, got "${v}"`);
  }
  return n;
}

export async function generateCommand(words: string[], packageRoot: string, addon?: HqloraAddon): Promise<number> {
  const p = parseWords(words, ['--prompt', '--max-tokens', '--temperature', '--seed', '--top-k', '--top-p'], ['--json', '--base'], 'generate');
  if (p.positionals.length !== 1) throw new UsageError('hqlora generate needs exactly one run or adapter folder');
  const prompt = p.flags.get('--prompt');
  if (typeof prompt !== 'string') throw new UsageError('hqlora generate needs --prompt TEXT');
  const source = path.resolve(p.positionals[0] ?? '');
  const json = p.flags.has('--json');
  let gguf;
  try {
    gguf = await ensureRunGguf({
      addon: addon ?? loadAddon(packageRoot), packageRoot, source,
      onProgress: (e) => { if (e.phase !== 'write') process.stderr.write(`gguf: ${e.phase} ${e.item}\n`); },
    });
  } catch (e) {
    if (isNativeError(e)) throw toHqError(e);
    throw e;
  }
  const client = new PlaygroundClient({ packageRoot });
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.on('SIGINT', onSigint);
  try {
    const maxTokens = numberOf(p, '--max-tokens', true);
    const temperature = numberOf(p, '--temperature', false);
    const seed = numberOf(p, '--seed', true);
    const topK = numberOf(p, '--top-k', true);
    const topP = numberOf(p, '--top-p', false);
    const r = await client.generate({
      model: p.flags.has('--base') ? gguf.base : gguf.merged, prompt,
      ...(maxTokens !== undefined ? { maxTokens } : {}), ...(temperature !== undefined ? { temperature } : {}),
      ...(seed !== undefined ? { seed } : {}), ...(topK !== undefined ? { topK } : {}), ...(topP !== undefined ? { topP } : {}),
    }, json ? undefined : (t) => process.stdout.write(t), abort.signal);
    if (json) process.stdout.write(`${JSON.stringify({ ...r, model: p.flags.has('--base') ? 'base' : 'tuned', gguf: gguf.folder })}\n`);
    else process.stdout.write('\n');
    process.stderr.write(`[${r.tokens} tokens, ${r.stopReason}, TTFT ${r.ttftMs.toFixed(0)} ms, ${r.tokensPerSecond.toFixed(1)} tok/s, ${r.format}]\n`);
    return r.stopReason === 'cancelled' ? 3 : 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    client.dispose();
  }
}
