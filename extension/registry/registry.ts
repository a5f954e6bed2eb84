// registry.ts — the runs this workspace started, persisted in workspaceState so that a window reload or a VS Code
// restart finds them again (run folder, PID + process start time, status, config, start time). Finished runs that
// the registry does not know (started from the CLI, or from another machine) are found by scanning run folders.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import type * as vscode from 'vscode';

import type { RunRecord } from './run';

const KEY = 'hqlora.runs.v1';
/** Records kept (the newest); older run folders are still listed by the folder scan. */
const MAX_RECORDS = 200;

export class RunRegistry {
  constructor(private readonly state: vscode.Memento) {}

  load(): RunRecord[] {
    const raw = this.state.get<unknown>(KEY);
    return Array.isArray(raw) ? raw.filter(isRecord) : [];
  }

  async save(records: RunRecord[]): Promise<void> {
    const newest = [...records].sort((a, b) => b.startedAt - a.startedAt).slice(0, MAX_RECORDS);
    await this.state.update(KEY, newest);
  }
}

function isRecord(x: unknown): x is RunRecord {
  if (!x || typeof x !== 'object') return false;
  const r = x as Partial<RunRecord>;
  return typeof r.runDir === 'string' && typeof r.configFile === 'string' && typeof r.startedAt === 'number' &&
    typeof r.status === 'string' && typeof r.message === 'string';
}

/** Run folders (those holding run.json) directly under each of `dirs`, newest first, at most `limit`. */
export function scanRunFolders(dirs: Iterable<string>, limit = 100): { runDir: string; mtimeMs: number }[] {
  const found = new Map<string, number>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const runJson = path.join(dir, n, 'run.json');
      if (!existsSync(runJson)) continue;
      const events = path.join(dir, n, 'events.jsonl');
      found.set(path.join(dir, n), statSync(existsSync(events) ? events : runJson).mtimeMs);
    }
  }
  return [...found].map(([runDir, mtimeMs]) => ({ runDir, mtimeMs })).sort((a, b) => b.mtimeMs - a.mtimeMs).slice(0, limit);
}
