// vscode.ts — the webview's typed channel to the extension host (schemas/webview-messages.schema.json).
import type { HostToWebview, WebviewToHost } from '../schemas/generated/webview-messages';

/** The small view state kept by VS Code across hide/reload (the host owns everything else). */
export interface ViewState {
  selected?: string;
  overlay: string[];
  smoothing: number;
}

interface VsCodeApi {
  postMessage(message: WebviewToHost): void;
  getState(): ViewState | undefined;
  setState(state: ViewState): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const api = acquireVsCodeApi();

export const post = (m: WebviewToHost): void => api.postMessage(m);
export const getState = (): ViewState => ({ overlay: [], smoothing: 0.6, ...api.getState() });
export const setState = (s: ViewState): void => api.setState(s);

export function onHostMessage(handler: (m: HostToWebview) => void): void {
  window.addEventListener('message', (e: MessageEvent<HostToWebview>) => handler(e.data));
}
