// io.ts — the CLI's warning channel (stderr, one line, prefixed so it stands out from progress output).

export function warn(message: string): void {
  process.stderr.write(`hqlora: warning: ${message}\n`);
}
