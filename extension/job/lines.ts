// lines.ts — splits a text stream into lines, safe for chunks that end in the middle of a line.
// (Decode bytes with setEncoding('utf8') first, so multi-byte characters are never split.)

export class LineSplitter {
  private rest = '';

  /** Adds a chunk; returns the lines it completed (without their '\n' or '\r\n'). */
  push(chunk: string): string[] {
    const parts = (this.rest + chunk).split('\n');
    this.rest = parts.pop() ?? '';
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  }

  /** The unterminated last line at end of stream, if any. */
  end(): string[] {
    const last = this.rest;
    this.rest = '';
    return last ? [last] : [];
  }
}
