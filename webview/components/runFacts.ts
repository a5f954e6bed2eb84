// runFacts.ts — the data-parallel facts of the dashboard's run header, as text (pure: the unit tests import it): the
// global throughput of the last step and each rank's memory (RunSummary.tokensPerS / ranks / rankMemoryBytes).
import type { RunSummary } from '../../schemas/generated/webview-messages';

/** `1.50 GiB`: binary units, as the trainer's log and the extension show memory. */
export function formatMemory(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** `12,345 tok/s` (the global batch's, `on 4 ranks` for a data-parallel run); `—` before the first step. */
export function formatThroughput(r: Pick<RunSummary, 'tokensPerS' | 'ranks'>): string {
  if (r.tokensPerS === null) return r.ranks > 1 ? `— on ${r.ranks} ranks` : '—';
  const tps = Math.round(r.tokensPerS).toLocaleString('en-US');
  return r.ranks > 1 ? `${tps} tok/s on ${r.ranks} ranks` : `${tps} tok/s`;
}

/** Each rank's memory, `rank 0 1.20 GiB · rank 1 1.21 GiB`, or the one process's; `—` before the first step. */
export function formatRankMemory(bytes: number[]): string {
  if (bytes.length === 0) return '—';
  if (bytes.length === 1) return formatMemory(bytes[0] as number);
  return bytes.map((b, k) => `rank ${k} ${formatMemory(b)}`).join(' · ');
}
