// main.ts — `hqlora`, the command-line face of the extension's run module (bundled to dist/cli.js).
// Every failure prints one message (what, where, what to do) and exits non-zero; stack traces need HQLORA_DEBUG=1.
import { existsSync } from 'node:fs';
import path from 'node:path';

import pkg from '../../package.json';
import { formatError } from '../core/errors';
import { findTrainer } from '../job/trainer';
import { USAGE, UsageError, checkFlags, onePositional, parseArgs } from './args';
import { evalCommand } from './eval';
import { CHAT_USAGE, chatCommand } from './chat';
import { GENERATE_USAGE, generateCommand } from './generate';
import { inspectCommand } from './inspect';
import { EXPORT_USAGE, exportCommand } from './merge';
import { previewCommand } from './preview';
import { warn } from './io';
import { runCommand } from './run';
import { sweepCommand } from './sweep';
import { validateCommand } from './validate';

/** dist/cli.js lives one folder below the package root (which holds native/build/bin/hqlora-train). */
const packageRoot = path.resolve(__dirname, '..');

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const trainerFlag = args.flags.get('--trainer');
  const trainerSetting = typeof trainerFlag === 'string' ? trainerFlag : undefined;
  if (args.flags.has('--help') || args.command === 'help') {
    process.stdout.write(`${USAGE}\nMerge and export:\n${EXPORT_USAGE}\nTry the tuned model:\n${GENERATE_USAGE}${CHAT_USAGE}`);
    return 0;
  }
  if (args.flags.has('--version') && args.command === undefined) {
    checkFlags(args, ['--version', '--trainer']);
    process.stdout.write(`hqlora ${pkg.version}\n`);
    const t = await findTrainer({ packageRoot, setting: trainerSetting, onWarning: warn });
    process.stdout.write(`trainer: ${t.path} (hqlora-train ${t.version}, from ${t.source})\nbackends: ${t.backends.join(', ')}\n`);
    return 0;
  }
  switch (args.command) {
    case 'run':
      checkFlags(args, ['--resume', '--gpus', '--threads', '--trainer']);
      return runCommand({
        configPath: onePositional(args, 'config file'),
        packageRoot,
        resume: args.flags.has('--resume'),
        gpus: numberFlag(args.flags.get('--gpus'), '--gpus'),
        threads: numberFlag(args.flags.get('--threads'), '--threads'),
        trainerSetting,
      });
    case 'sweep': {
      checkFlags(args, ['--dry-run', '--only', '--retry-failed', '--add', '--restart', '--threads', '--trainer']);
      const only = args.flags.get('--only');
      return sweepCommand({
        file: onePositional(args, 'sweep file'), packageRoot, dryRun: args.flags.has('--dry-run'),
        ...(typeof only === 'string' ? { only } : {}), retryFailed: args.flags.has('--retry-failed'),
        add: args.flags.has('--add'), restart: args.flags.has('--restart'),
        ...(numberFlag(args.flags.get('--threads'), '--threads') !== undefined ? { threads: numberFlag(args.flags.get('--threads'), '--threads') } : {}),
        ...(trainerSetting !== undefined ? { trainerSetting } : {}),
      });
    }
    case 'validate':
      checkFlags(args, ['--json']);
      return validateCommand(onePositional(args, 'config file'), args.flags.has('--json'));
    case 'inspect':
      checkFlags(args, ['--json', '--trainer']);
      return inspectCommand({ target: onePositional(args, 'file or folder'), json: args.flags.has('--json'), packageRoot, trainerSetting });
    case 'preview-data':
      checkFlags(args, ['--n', '--json']);
      return previewCommand(onePositional(args, 'config file'), numberFlag(args.flags.get('--n'), '--n') ?? 5, args.flags.has('--json'));
    case 'eval': {
      checkFlags(args, ['--mcq', '--shots', '--split', '--ablation', '--adapter', '--max-questions', '--threads', '--trainer']);
      const str = (f: string): string | undefined => {
        const v = args.flags.get(f);
        return typeof v === 'string' ? v : undefined;
      };
      return evalCommand({
        target: onePositional(args, 'config file or run folder'), packageRoot, ablation: args.flags.has('--ablation'),
        mcq: str('--mcq'), shots: numberFlag(args.flags.get('--shots'), '--shots'), split: str('--split'),
        adapter: str('--adapter'), maxQuestions: numberFlag(args.flags.get('--max-questions'), '--max-questions'),
        threads: numberFlag(args.flags.get('--threads'), '--threads'), trainerSetting,
      });
    }
    case 'merge':
    case 'export':
    case 'combine':
      return exportCommand({ command: args.command, words: argv.filter((_, i) => i !== argv.indexOf(args.command ?? '')), packageRoot, exists: existsSync });
    case 'generate':
      return generateCommand(argv.filter((_, i) => i !== argv.indexOf('generate')), packageRoot);
    case 'chat':
      return chatCommand(argv.filter((_, i) => i !== argv.indexOf('chat')), packageRoot);
    case undefined:
      throw new UsageError('no command given');
    default:
      throw new UsageError(`unknown command "${args.command}"`);
  }
}

function numberFlag(v: string | true | undefined, name: string): number | undefined {
  if (v === undefined || v === true) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} must be a whole number, got "${v}"`);
  return Number(v);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`hqlora: ${err.message}\n  hint: run \`hqlora --help\` for usage\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`hqlora: ${formatError(err, process.env.HQLORA_DEBUG === '1')}\n`);
    process.exitCode = 1;
  },
);
