// protocol.ts — the contract between a parent (the CLI, the extension host) and the playground server
// (server.ts → dist/playground.js, its own Node process running node-llama-cpp). One JSON object per line:
// requests on the child's stdin, replies and stream events on its stdout (human logs go to stderr).
//
// Every request carries an `id`; the server answers each with exactly one `result` or `error` of that id, and
// `generate` sends `token` events of that id before it. `cancel {id}` stops that request's generation at once (its
// result then has stopReason "cancelled").

/** Which compute llama.cpp runs on; sent once as the server's first line ("hello"). */
export interface HelloEvent {
  type: 'hello';
  /** "cuda" | "vulkan" | "metal" | "cpu" */
  backend: string;
  /** Why a GPU was not used, when backend is "cpu". */
  note?: string;
  nodeLlamaCppVersion: string;
}

/** Reference data for the logits check: log-softmax of our forward, rows × vocab float32 in `file`. */
export interface LogitsCase {
  name: string;
  /** GGUF model file. */
  model: string;
  /** LoRA GGUF applied on top (scale 1). */
  lora?: string;
  /** [rows][seq] token ids, evaluated row by row from an empty context. */
  ids: number[][];
  /** Float32 little-endian file of rows·seq·vocab log-probabilities (ours), in row-major order. */
  referenceFile: string;
  vocab: number;
  /** Also compare against the llama.cpp log-probabilities of this earlier case of the same request. */
  compareTo?: string;
}

/** Sent by the parent: tokenize `strings` and evaluate `cases`; answers VerifyResult. */
export interface VerifyRequest {
  id: number;
  op: 'verify';
  /** The GGUF whose tokenizer is checked. */
  tokenizerModel: string;
  strings: string[];
  cases: LogitsCase[];
}

export interface VerifyResult {
  /** llama.cpp's ids of each string (special tokens parsed, none added). */
  tokens: number[][];
  /** Whether llama.cpp adds BOS / EOS to a prompt (tokenizer.ggml.add_bos_token as llama.cpp reads it). */
  addBos: boolean;
  cases: {
    name: string; max_abs_diff: number; mean_abs_diff: number; positions: number;
    /** Against case `compareTo` (both llama.cpp). */
    vs?: { case: string; max_abs_diff: number; mean_abs_diff: number };
  }[];
}

/** Sampling settings; temperature 0 = greedy. */
export interface SamplingSettings {
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  maxTokens?: number;
}

/** Sent by the parent: one answer. `prompt` is raw text when `chat` is false, else the last user turn. */
export interface GenerateRequest extends SamplingSettings {
  id: number;
  op: 'generate';
  model: string;
  lora?: string;
  /** Chat: history with the model's chat template (or a plain prompt when it has none). */
  messages?: { role: 'system' | 'user' | 'assistant'; content: string }[];
  prompt?: string;
  contextSize?: number;
}

export interface GenerateResult {
  text: string;
  tokens: number;
  promptTokens: number;
  /** "eos" | "maxTokens" | "cancelled" */
  stopReason: string;
  ttftMs: number;
  tokensPerSecond: number;
  /** "chat-template" when the GGUF's tokenizer.chat_template formatted the history, else "plain". */
  format: 'chat-template' | 'plain';
}

export interface CancelRequest {
  id: number;
  op: 'cancel';
  /** The request to stop. */
  target: number;
}

export type Request = VerifyRequest | GenerateRequest | CancelRequest;

export type ServerMessage =
  | HelloEvent
  | { type: 'token'; id: number; text: string }
  | { type: 'result'; id: number; result: VerifyResult | GenerateResult }
  | { type: 'error'; id: number; message: string; code: string; file?: string };
