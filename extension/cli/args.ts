// args.ts — the command line of `hqlora`: subcommand, positionals and flags, with usage errors that say what to do.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface ParsedArgs {
  command: string | undefined;
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Flags that take a value (`--threads 2` or `--threads=2`). */
const VALUE_FLAGS = new Set(['--gpus', '--threads', '--trainer', '--n', '--mcq', '--shots', '--split', '--adapter', '--max-questions', '--only']);

export function parseArgs(argv: string[]): ParsedArgs {
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(0, eq) : a;
      if (VALUE_FLAGS.has(name)) {
        const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
        flags.set(name, value);
      } else {
        if (eq >= 0) throw new UsageError(`${name} takes no value`);
        flags.set(name, true);
      }
    } else if (a.startsWith('-') && a.length > 1) {
      flags.set(a === '-h' ? '--help' : a === '-v' || a === '-V' ? '--version' : a, true);
    } else {
      positionals.push(a);
    }
  }
  const [command, ...rest] = positionals;
  return { command, positionals: rest, flags };
}

/** Fails on flags a command does not know, naming them. */
export function checkFlags(args: ParsedArgs, allowed: string[]): void {
  for (const f of args.flags.keys()) {
    if (!allowed.includes(f)) {
      throw new UsageError(`unknown option ${f}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}`);
    }
  }
}

export function onePositional(args: ParsedArgs, what: string): string {
  if (args.positionals.length !== 1) {
    throw new UsageError(`hqlora ${args.command ?? ''} needs exactly one ${what}`);
  }
  return args.positionals[0] ?? '';
}

export const USAGE = `hqlora — hierarchical QLoRA fine-tuning (CLI of the H-QLoRA VS Code extension)

Usage:
  hqlora run <config.hqlora.yaml> [--resume] [--gpus N] [--threads N] [--trainer PATH]
      Validate the config, tokenize the data into <run>/data, train with hqlora-train and print live progress.
      Ends by printing where the adapters went (<run>/adapter and <run>/peft).
      --gpus N (default: hardware.gpus) trains data parallel on N ranks of this host, one per GPU (with
      hardware.device cpu: N CPU processes); hqlora-train starts and supervises them, and one rank's failure
      stops them all.
      Exit code: 0 completed, 3 stopped (Ctrl-C; continue with --resume), 1 failed.
  hqlora validate <config.hqlora.yaml> [--json]
      Check a config against schemas/run-config.schema.json; --json prints the resolved run.json.
  hqlora inspect <file.safetensors | model-folder> [--json] [--trainer PATH]
      List the tensors (dtype, shape, bytes) and metadata, as validated by the native parser.
  hqlora preview-data <config.hqlora.yaml> [--n N] [--json]
      Show the first N (default 5) training examples as the model sees them: the rendered text with the trained
      (loss-bearing) part marked, and token counts. Nothing is written.
  hqlora eval <config.hqlora.yaml | run-folder> [--mcq DIR|FILE] [--shots K] [--split val|test|dev] [--ablation]
              [--adapter DIR|none] [--max-questions N] [--threads N] [--trainer PATH]
      Score the base model (NF4) and base + adapter: eval loss/perplexity and multiple-choice accuracy (MMLU
      Hendrycks folder or CSV, or QLoRA {subject,input,output} JSON; default: the config's eval.mcq). --ablation adds
      levels 1..k cumulatively. Prints the table and saves <run>/eval.json and <run>/eval.md.
  hqlora sweep <file.hqsweep.yaml> [--dry-run] [--only CELL] [--retry-failed] [--add | --restart] [--threads N]
      Run every cell of a rank-split sweep (schemas/sweep.schema.json), each an ordinary run in
      <output.dir>/<name>/cells/<cell>, score it, and write the matrix: sweep-results.json, results.csv, results.md.
      Running it again continues (finished cells kept, interrupted ones resumed from their last checkpoint).
      --dry-run prints the cells with their estimated memory and FLOPs; --only runs one cell; --retry-failed
      reruns failed cells; --add / --restart answer "the sweep file changed" (add the new cells / start over).
      Exit code: 0 all cells done, 1 some failed, 3 stopped (Ctrl-C).
  hqlora --version [--trainer PATH]
      Print the CLI version, the trainer path and its backends.
  hqlora --help

Options:
  --resume        continue the newest run of this config from its newest complete checkpoint
  --threads N     compute threads for the trainer (default: hardware.threads from the config; 0 = all cores)
  --trainer PATH  hqlora-train to use (same rank as a user setting; HQLORA_TRAINER still comes first)
  --n N           preview-data: how many examples to show (default 5)
  --json          machine-readable output

Environment:
  HQLORA_TRAINER  path of hqlora-train (first in the discovery order)
  HQLORA_DEBUG=1  print stack traces of internal errors
`;
