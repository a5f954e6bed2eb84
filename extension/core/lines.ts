// lines.ts — the one line splitter: a stream of chunks (a child's stdout, the bytes a tailer read) into lines, safe
// for chunks that end in the middle of a line or, for byte chunks, in the middle of a UTF-8 sequence (a
// StringDecoder keeps its first bytes for the next chunk). Feed one stream either strings (a pipe with
// setEncoding('utf8')) or bytes, not both.
import { StringDecoder } from 'node:string_decoder';

export class LineSplitter {
  private rest = '';
  private readonly decoder = new StringDecoder('utf8');

  /** Adds a chunk; returns the lines it completed (without their '\n' or '\r\n'). */
  push(chunk: string | Uint8Array): string[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const parts = (this.rest + text).split('\n');
    this.rest = parts.pop() ?? '';
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  }

  /** The unterminated last line at end of stream, if any (a cut-off UTF-8 sequence ends in U+FFFD). */
  end(): string[] {
    const last = this.rest + this.decoder.end();
    this.rest = '';
    return last ? [last] : [];
  }
}
