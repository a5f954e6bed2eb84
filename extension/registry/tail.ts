// tail.ts — follows a growing text file (events.jsonl, trainer.log) by polling its size, like `tail -F`.
//
// - Partial lines: a chunk may end inside a line (or inside a UTF-8 sequence); only complete lines are delivered,
//   the rest waits for the next read (core/lines.ts, which also keeps split multi-byte characters).
// - Truncation (size < offset) and rotation (a new inode at the same path) restart from the beginning and call
//   onReset first, so the reader can drop what it built from the old content.
// - A missing file is not an error: the trainer creates events.jsonl only once its run folder is known.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

import { LineSplitter } from '../core/lines';

export interface TailerOptions {
  onLines: (lines: string[]) => void;
  onReset?: () => void;
  /** Poll period while following (ms). */
  intervalMs?: number;
  /** Most bytes read per poll, so a huge file is consumed in slices without blocking the host. */
  maxChunk?: number;
}

export class FileTailer {
  private offset = 0;
  private inode: number | undefined;
  private splitter = new LineSplitter();
  private timer: NodeJS.Timeout | undefined;
  private readonly buf: Buffer;

  constructor(readonly file: string, private readonly opts: TailerOptions) {
    this.buf = Buffer.allocUnsafe(opts.maxChunk ?? 1 << 20);
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.offset;
  }

  /** Starts polling (reads what is there right away). */
  follow(): void {
    if (this.timer) return;
    this.poll();
    this.timer = setInterval(() => this.poll(), this.opts.intervalMs ?? 250);
  }

  /** Reads everything currently in the file; with `final`, also delivers an unterminated last line. */
  drain(final = false): void {
    while (this.poll()) {
      // keep reading until a poll returns no new bytes
    }
    if (final) {
      const last = this.splitter.end();
      if (last.length) this.opts.onLines(last);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One read; true when new bytes were consumed. */
  poll(): boolean {
    let st;
    try {
      st = statSync(this.file);
    } catch {
      return false;
    }
    if ((this.inode !== undefined && st.ino !== this.inode) || st.size < this.offset) this.reset();
    this.inode = st.ino;
    if (st.size === this.offset) return false;
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return false;
    }
    try {
      if (fstatSync(fd).ino !== this.inode) return false; // replaced between stat and open: next poll resets
      const n = readSync(fd, this.buf, 0, Math.min(this.buf.length, st.size - this.offset), this.offset);
      if (n <= 0) return false;
      this.offset += n;
      const lines = this.splitter.push(this.buf.subarray(0, n));
      if (lines.length) this.opts.onLines(lines);
      return true;
    } finally {
      closeSync(fd);
    }
  }

  private reset(): void {
    this.offset = 0;
    this.splitter = new LineSplitter();
    this.opts.onReset?.();
  }
}
