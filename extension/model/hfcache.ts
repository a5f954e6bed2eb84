// hfcache.ts — the local Hugging Face hub cache, read offline: which models it holds and where a repo id's snapshot
// is. No network, no huggingface_hub: the layout is the documented one,
//   <cache>/models--<org>--<name>/refs/<branch or tag>     (a file holding the commit hash)
//   <cache>/models--<org>--<name>/snapshots/<commit>/...   (the files of that commit, symlinks into blobs/)
// and the cache folder is chosen as huggingface_hub chooses it: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
// The one model lookup: used by the language server (diagnostics, completion, hover) and by run/resolve.ts (the run
// records the snapshot).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The hub cache folder huggingface_hub would use with this environment. */
export function hfCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  if (env.XDG_CACHE_HOME) return path.join(env.XDG_CACHE_HOME, 'huggingface', 'hub');
  return path.join(home, '.cache', 'huggingface', 'hub');
}

const REPO_PART = '[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?';
const REPO_ID = new RegExp(`^(?:${REPO_PART}/)?${REPO_PART}$`);

/** Whether `s` is spelled like a Hugging Face model repo id (`org/name` or `name`). */
export function looksLikeRepoId(s: string): boolean {
  return REPO_ID.test(s) && !s.includes('..') && !s.includes('--');
}

/** `models--org--name` for `org/name`. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split('/').join('--')}`;
}

export interface CachedModel {
  repoId: string;
  /** Absolute path of models--org--name. */
  dir: string;
  /** Branches and tags under refs/ (e.g. main). */
  refs: string[];
  /** Commit hashes under snapshots/ that hold a config.json. */
  snapshots: string[];
}

/** Every model repo in the cache that has at least one snapshot with a config.json, sorted by repo id. */
export function listCachedModels(cacheDir: string): CachedModel[] {
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return [];
  }
  const out: CachedModel[] = [];
  for (const name of names) {
    if (!name.startsWith('models--')) continue;
    const dir = path.join(cacheDir, name);
    const snapshots = safeReaddir(path.join(dir, 'snapshots')).filter((c) => existsSync(path.join(dir, 'snapshots', c, 'config.json')));
    if (snapshots.length === 0) continue;
    out.push({ repoId: name.slice('models--'.length).split('--').join('/'), dir, refs: listRefs(path.join(dir, 'refs')), snapshots });
  }
  return out.sort((a, b) => a.repoId.localeCompare(b.repoId));
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Ref names under refs/, including nested ones such as refs/pr/1. */
function listRefs(refsDir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const n of safeReaddir(refsDir)) {
    const p = path.join(refsDir, n);
    try {
      if (statSync(p).isDirectory()) out.push(...listRefs(p, `${prefix}${n}/`));
      else out.push(`${prefix}${n}`);
    } catch {
      // a dangling entry is not a ref
    }
  }
  return out;
}

export type RepoResolution =
  | { ok: true; repoId: string; snapshot: string; commit: string }
  | { ok: false; repoId: string; reason: string };

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The snapshot folder of `repoId` at `revision` (a ref name or a commit hash) in `cacheDir`, or why there is none.
 */
export function resolveRepoId(repoId: string, revision: string, cacheDir: string): RepoResolution {
  const dir = path.join(cacheDir, repoFolderName(repoId));
  if (!existsSync(dir)) {
    return { ok: false, repoId, reason: `"${repoId}" is not in the local Hugging Face cache (${cacheDir})` };
  }
  let commit = revision;
  if (!COMMIT.test(revision)) {
    const refFile = path.join(dir, 'refs', revision);
    try {
      commit = readFileSync(refFile, 'utf8').trim();
    } catch {
      const refs = listRefs(path.join(dir, 'refs'));
      return { ok: false, repoId, reason: `revision "${revision}" of ${repoId} is not in the cache (cached refs: ${refs.join(', ') || 'none'})` };
    }
  }
  const snapshot = path.join(dir, 'snapshots', commit);
  if (!existsSync(snapshot)) {
    return { ok: false, repoId, reason: `snapshot ${commit} of ${repoId} is missing from the cache (${snapshot})` };
  }
  return { ok: true, repoId, snapshot, commit };
}

export type ModelLocation =
  | { kind: 'folder'; dir: string }
  | { kind: 'cache'; dir: string; repoId: string; commit: string }
  | { kind: 'missing'; dir: string; reason: string };

/**
 * Where the model named in a config is: a folder relative to `baseDir` (or absolute) when it exists, else a repo id
 * found in the cache, else missing with the reason (naming every place that was looked at).
 */
export function locateModel(spec: string, revision: string | undefined, baseDir: string, cacheDir: string): ModelLocation {
  const expanded = spec.startsWith('~/') ? path.join(os.homedir(), spec.slice(2)) : spec;
  const dir = path.resolve(baseDir, expanded);
  if (existsSync(dir)) return { kind: 'folder', dir };
  if (looksLikeRepoId(spec)) {
    const r = resolveRepoId(spec, revision ?? 'main', cacheDir);
    if (r.ok) return { kind: 'cache', dir: r.snapshot, repoId: spec, commit: r.commit };
    return { kind: 'missing', dir, reason: `model folder not found: ${dir}, and ${r.reason}` };
  }
  return { kind: 'missing', dir, reason: `model folder not found: ${dir}` };
}
