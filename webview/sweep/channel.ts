// channel.ts — the sweep webview's typed channel to the extension host (schemas/sweep-messages.schema.json).
import type { HostToSweep, SweepToHost } from '../../schemas/generated/sweep-messages';

/** The small view state kept by VS Code across hide/reload: the sweep shown (for the serializer) and the sort. */
export interface SweepViewState {
  sweepFile?: string;
  sort: { key: string; dir: 1 | -1 };
}

interface VsCodeApi {
  postMessage(message: SweepToHost): void;
  getState(): SweepViewState | undefined;
  setState(state: SweepViewState): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const api = acquireVsCodeApi();

export const post = (m: SweepToHost): void => api.postMessage(m);
export const getState = (): SweepViewState => ({ sort: { key: 'index', dir: 1 }, ...api.getState() });
export const setState = (s: SweepViewState): void => api.setState(s);

export function onHostMessage(handler: (m: HostToSweep) => void): void {
  window.addEventListener('message', (e: MessageEvent<HostToSweep>) => handler(e.data));
}
