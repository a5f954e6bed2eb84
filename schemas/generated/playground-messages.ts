// GENERATED from schemas/playground-messages.schema.json by scripts/gen-types.mjs — do not edit.
// Run `npm run gen:types` after changing the schema; test/unit/schemas.test.ts fails when this file is stale.
/* eslint-disable */
/**
 * The postMessage protocol between the chat playground webview (webview/playground/, sender of PlaygroundToHost) and the extension host (extension/playground/panel.ts, sender of HostToPlayground). Every PlaygroundToHost message is untrusted input: the host validates it against $defs.PlaygroundToHost and ignores it, with a log line, when it does not match. The host posts nothing before the webview's `ready`.
 */
export type PlaygroundMessage = PlaygroundToHost | HostToPlayground;
/**
 * Sent by the webview (webview/playground/main.ts) to the extension host.
 */
export type PlaygroundToHost =
  PgReadyMessage | AskMessage | StopMessage | RegenerateMessage | ClearMessage | CopyMarkdownMessage;
/**
 * Which model a pane answers with: "base" (the base model), "tuned" (every level, the merged GGUF) or "L<n>" (base + the LoRA of levels 1..n).
 */
export type PaneId = string;
/**
 * Sent by the extension host (extension/playground/panel.ts) to the webview.
 */
export type HostToPlayground =
  PgInitMessage | StatusMessage | TurnMessage | TokenMessage | AnswerMessage | ClearedMessage;

/**
 * Sent once the webview's script has loaded (the handshake: the host posts nothing before it).
 */
export interface PgReadyMessage {
  type: 'ready';
}
/**
 * Sent when the user sends a prompt: one new user turn, answered in each of `panes` (2 to 4) with `settings`.
 */
export interface AskMessage {
  type: 'ask';
  prompt: string;
  /**
   * @minItems 2
   * @maxItems 4
   */
  panes: PaneId[];
  settings: Settings;
}
/**
 * Sampling settings of the session. temperature 0 is greedy (the default, for reproducible comparisons).
 */
export interface Settings {
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  seed: number;
  systemPrompt: string;
}
/**
 * Stop button: every pane's generation stops at once (its answer keeps the text so far).
 */
export interface StopMessage {
  type: 'stop';
}
/**
 * Regenerate button: the last user turn is answered again in the same panes, with `settings`.
 */
export interface RegenerateMessage {
  type: 'regenerate';
  settings: Settings;
}
/**
 * Clear button: the history of every pane is dropped.
 */
export interface ClearMessage {
  type: 'clear';
}
/**
 * Copy as Markdown button: the host puts the conversation of every pane on the clipboard.
 */
export interface CopyMarkdownMessage {
  type: 'copyMarkdown';
}
/**
 * The session: which run, which panes can be shown (base, tuned, and one per level prefix), the default panes, the default settings, and whether the model has a chat template.
 */
export interface PgInitMessage {
  type: 'init';
  run: string;
  panes: PaneInfo[];
  defaultPanes: PaneId[];
  settings: Settings;
  /**
   * False: the model has no chat template, prompts are sent as plain text (the webview says so).
   */
  chatTemplate: boolean;
}
export interface PaneInfo {
  id: PaneId;
  /**
   * What the pane shows, e.g. "base", "tuned (levels 1-3)", "levels 1-2".
   */
  label: string;
}
/**
 * A line of what the host is doing ("exporting the GGUF (first use)", "llama.cpp on cpu: ..."), or an error that is not one pane's.
 */
export interface StatusMessage {
  type: 'status';
  text: string;
  level: 'info' | 'busy' | 'error';
}
/**
 * A user turn was accepted: every listed pane starts an answer to it (regenerate: the last answer is replaced).
 */
export interface TurnMessage {
  type: 'turn';
  prompt: string;
  panes: PaneId[];
  regenerate: boolean;
}
/**
 * Streamed text of a pane's current answer.
 */
export interface TokenMessage {
  type: 'token';
  pane: PaneId;
  text: string;
}
/**
 * A pane's answer ended: its whole text and figures, or the error that ended it.
 */
export interface AnswerMessage {
  type: 'answer';
  pane: PaneId;
  text: string;
  stopReason: 'eos' | 'maxTokens' | 'cancelled' | 'error';
  tokens?: number;
  promptTokens?: number;
  ttftMs?: number;
  tokensPerSecond?: number;
  format?: 'chat-template' | 'plain';
  error?: string;
}
/**
 * Every pane's history was dropped.
 */
export interface ClearedMessage {
  type: 'cleared';
}
