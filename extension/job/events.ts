// events.ts — the one reader of a trainer's event stream (docs/CONTRACTS.md §5), for both places the events come
// from: the trainer's stdout (job/launcher.ts, job/evaluate.ts: `hqlora run`, `hqlora eval`) and <run>/events.jsonl,
// which the trainer appends itself (registry/run.ts: the extension, which must re-read a run after a reload).
//
// Every non-blank line is validated against schemas/trainer-events.schema.json (core/schemas.ts parseEventLine):
// a valid event goes to `event`, anything else to `invalid` with the reason (a warning, never a crash). The reader
// keeps what its users ask of a stream: the start event, the last step, the done and error events. A `start` clears
// done and error: events.jsonl of a resumed run holds the earlier process's events before it. readEventFile reads a
// whole file at once (the sweep's cell outcomes and costs).
import { readFileSync } from 'node:fs';

import type { DoneEvent, ErrorEvent, StartEvent, StepEvent, TrainerEvent } from '../../schemas/generated/trainer-events';
import { LineSplitter } from '../core/lines';
import { parseEventLine } from '../core/schemas';

export interface EventHandlers {
  /** A schema-valid trainer event, in stream order (after the reader's own fields are updated). */
  event?: (e: TrainerEvent) => void;
  /** A line that is not JSON or does not match the schema. */
  invalid?: (line: string, reason: string) => void;
}

export class TrainerEventReader {
  start?: StartEvent;
  lastStep?: StepEvent;
  done?: DoneEvent;
  error?: ErrorEvent;
  /** The latest event `time` (Unix seconds), 0 before the first event. */
  lastTime = 0;
  private splitter = new LineSplitter();

  constructor(private readonly handlers: EventHandlers = {}) {}

  /** A chunk of the stream (a pipe's text, or bytes): its complete lines are read now, the rest with the next. */
  push(chunk: string | Uint8Array): void {
    this.lines(this.splitter.push(chunk));
  }

  /** End of stream: reads an unterminated last line. */
  end(): void {
    this.lines(this.splitter.end());
  }

  /** Lines already split (a FileTailer's). */
  lines(lines: readonly string[]): void {
    for (const line of lines) this.line(line);
  }

  /** Forgets the stream (events.jsonl truncated or replaced: it is read again from its start). */
  reset(): void {
    this.start = this.lastStep = this.done = this.error = undefined;
    this.lastTime = 0;
    this.splitter = new LineSplitter();
  }

  private line(line: string): void {
    if (!line.trim()) return;
    const parsed = parseEventLine(line);
    if ('invalid' in parsed) {
      this.handlers.invalid?.(line, parsed.invalid);
      return;
    }
    const e = parsed.event;
    this.lastTime = Math.max(this.lastTime, e.time);
    if (e.type === 'start') {
      this.start = e;
      this.done = this.error = undefined;
    } else if (e.type === 'step') this.lastStep = e;
    else if (e.type === 'done') this.done = e;
    else if (e.type === 'error') this.error = e;
    this.handlers.event?.(e);
  }
}

/**
 * A whole event file (events.jsonl, trainer.stdout.jsonl) read at once: the reader after its last line, or null when
 * the file cannot be read (not written yet).
 */
export function readEventFile(file: string, handlers: EventHandlers = {}): TrainerEventReader | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return null;
  }
  const reader = new TrainerEventReader(handlers);
  reader.push(bytes);
  reader.end();
  return reader;
}
