// chat.ts — `hqlora chat <run>`: an interactive terminal chat with the tuned model (or --base, or --levels 1..n)
// through llama.cpp (the playground server), streaming each answer. Ctrl-C stops the answer at once; Ctrl-C at the
// prompt, Ctrl-D or /exit ends the chat (and the server). /clear drops the history. Greedy unless --temperature.
import readline from 'node:readline';

import type { PaneId } from '../../schemas/generated/playground-messages';
import { HqError } from '../core/errors';
import { isNativeError, loadAddon, toHqError } from '../native/addon';
import { DEFAULT_SETTINGS, PlaygroundSession } from '../playground/session';
import { UsageError } from './args';
import { numberOf, parseWords } from './generate';

export const CHAT_USAGE = `  hqlora chat <run-folder | adapter-folder> [--base | --levels 1,2] [--max-tokens N] [--temperature T] [--seed S]
              [--top-k K] [--top-p P] [--system TEXT]
      An interactive chat in the terminal, streamed; Ctrl-C stops the answer, Ctrl-D or /exit ends, /clear forgets.
      --levels 1,2 (or 2) chats with the first levels only (the base + their LoRA); --base with the base model.
`;

/** The pane of `--base` / `--levels`: a prefix 1..n of the adapter's L levels ("1,2" or "2"). */
export function chatPane(base: boolean, levels: string | undefined, L: number): PaneId {
  if (base && levels !== undefined) throw new UsageError('--base and --levels exclude each other');
  if (base) return 'base';
  if (levels === undefined) return 'tuned';
  const list = levels.split(',').map((x) => Number(x.trim()));
  const n = list.length === 1 ? list[0] ?? 0 : list.length;
  const prefix = list.length === 1 || list.every((x, i) => x === i + 1);
  if (!prefix || !Number.isInteger(n) || n < 1 || n > L) {
    throw new UsageError(`--levels ${levels}: give the first levels of the adapter's ${L} (e.g. 1 or 1,2), a prefix 1..n with n <= ${L}`);
  }
  return n === L ? 'tuned' : `L${n}`;
}

export async function chatCommand(words: string[], packageRoot: string): Promise<number> {
  const p = parseWords(words, ['--levels', '--max-tokens', '--temperature', '--seed', '--top-k', '--top-p', '--system'], ['--base'], 'chat');
  if (p.positionals.length !== 1) throw new UsageError('hqlora chat needs exactly one run or adapter folder');
  const levels = p.flags.get('--levels');
  const system = p.flags.get('--system');
  const settings = {
    ...DEFAULT_SETTINGS, maxTokens: numberOf(p, '--max-tokens', true) ?? 256, temperature: numberOf(p, '--temperature', false) ?? 0,
    seed: numberOf(p, '--seed', true) ?? 0, topK: numberOf(p, '--top-k', true) ?? DEFAULT_SETTINGS.topK,
    topP: numberOf(p, '--top-p', false) ?? DEFAULT_SETTINGS.topP, systemPrompt: typeof system === 'string' ? system : '',
  };
  const session = new PlaygroundSession({
    addon: loadAddon(packageRoot), packageRoot, source: p.positionals[0] ?? '',
    onProgress: (e) => { if (e.phase !== 'write') process.stderr.write(`gguf: ${e.phase} ${e.item}\n`); },
  });
  try {
    try {
      await session.prepare();
    } catch (e) {
      if (isNativeError(e)) throw toHqError(e);
      throw e;
    }
    const pane = chatPane(p.flags.has('--base'), typeof levels === 'string' ? levels : undefined, session.levels);
    if (pane !== 'base' && pane !== 'tuned') await session.levelLora(Number(pane.slice(1)));
    const hello = await session.client.start();
    const label = session.panes().find((x) => x.id === pane)?.label ?? pane;
    process.stderr.write(`chat with ${p.positionals[0] ?? ''} (${label}); llama.cpp on ${hello.backend}; ` +
      `${session.chatTemplate ? 'the model\'s chat template' : 'no chat template: plain prompts'}. Ctrl-C stops an answer, Ctrl-D or /exit ends.\n`);
    return await loop(session, pane, settings);
  } finally {
    session.dispose();
  }
}

function loop(session: PlaygroundSession, pane: PaneId, settings: typeof DEFAULT_SETTINGS): Promise<number> {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, prompt: 'you> ', terminal: process.stdin.isTTY });
    let answering = false;
    const interrupt = (): void => {
      if (answering) session.stop();
      else rl.close();
    };
    rl.on('SIGINT', interrupt);
    process.on('SIGINT', interrupt);
    rl.on('close', () => {
      process.removeListener('SIGINT', interrupt);
      process.stdout.write('\n');
      resolve(0);
    });
    // The input keeps being read while an answer streams, so that Ctrl-C (a key to readline in raw mode) reaches it.
    rl.on('line', (line) => {
      const text = line.trim();
      if (answering) return;
      if (text === '/exit') return rl.close();
      if (text === '/clear') {
        session.clear();
        process.stdout.write('(history cleared)\n');
        return rl.prompt();
      }
      if (!text) return rl.prompt();
      answering = true;
      process.stdout.write('model> ');
      void session.ask(text, [pane], settings, { onToken: (_, t) => process.stdout.write(t), onAnswer: () => undefined }).then(([a]) => {
        if (a?.stopReason === 'error') process.stdout.write(`\n[error: ${a.error ?? ''}]\n`);
        else process.stdout.write(`\n[${a?.tokens ?? 0} tokens, ${a?.stopReason === 'cancelled' ? 'stopped' : a?.stopReason ?? ''}, TTFT ${(a?.ttftMs ?? 0).toFixed(0)} ms, ${(a?.tokensPerSecond ?? 0).toFixed(1)} tok/s]\n`);
      }, (e: unknown) => {
        process.stdout.write(`\n[error: ${e instanceof HqError ? e.format() : String(e)}]\n`);
      }).finally(() => {
        answering = false;
        rl.prompt();
      });
    });
    rl.prompt();
  });
}
