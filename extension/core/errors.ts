// errors.ts — the one user-facing error type of the TypeScript side.
//
// Every failure a user can cause (bad YAML, schema violation, missing model, missing trainer, failed run) is an
// HqError that says what failed, where (file:line:col, config key, path) and what to do. The CLI prints
// `format()` and exits non-zero; the extension shows it in a notification. Stack traces only with HQLORA_DEBUG=1.

/** Where an error is: any of a file position, a config key path, or a filesystem path. */
export interface ErrorLocation {
  /** Absolute path of the file the error is about. */
  file?: string;
  /** 1-based line in `file`. */
  line?: number;
  /** 1-based column in `file`. */
  col?: number;
  /** Config key path, e.g. `adapter.levels[2].rank`. */
  key?: string;
}

export class HqError extends Error {
  override readonly name = 'HqError';

  constructor(
    message: string,
    readonly where: ErrorLocation = {},
    readonly hint = '',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** `file:line:col: message (at key)` plus an indented hint line. */
  format(): string {
    let head = this.message;
    const { file, line, col, key } = this.where;
    if (key) head += ` (at ${key})`;
    if (file) {
      const pos = line ? `:${line}${col ? `:${col}` : ''}` : '';
      head = `${file}${pos}: ${head}`;
    }
    return this.hint ? `${head}\n  hint: ${this.hint}` : head;
  }
}

/** Several errors found together (e.g. every schema violation of one config file). */
export class HqErrors extends HqError {
  constructor(readonly errors: HqError[]) {
    super(errors.map((e) => e.message).join('; '), errors[0]?.where ?? {}, errors[0]?.hint ?? '');
  }

  override format(): string {
    const all = this.errors.map((e) => e.format()).join('\n');
    return this.errors.length > 1 ? `${this.errors.length} problems:\n${all}` : all;
  }
}

/** Formats any thrown value for a user; unexpected errors keep their stack when `debug` is set. */
export function formatError(err: unknown, debug = false): string {
  if (err instanceof HqError) {
    return debug && err.stack ? `${err.format()}\n${err.stack}` : err.format();
  }
  if (err instanceof Error) {
    return debug && err.stack ? err.stack : `internal error: ${err.message} (set HQLORA_DEBUG=1 for details)`;
  }
  return `internal error: ${String(err)}`;
}

/** Node's errno code of a filesystem error, if any. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}
