// service.ts — the language server's wiring, independent of the transport: documents, debounced validation,
// and one handler per feature (the feature logic lives in its own module). server.ts runs it over IPC/stdio; the
// tests run it in-process over streams.
//
// Debounce: a change is validated after clamp(2 x the last validation's cost, minMs, maxMs), so a cheap config is
// checked almost at once and an expensive one (large dataset counted, slow disk) coalesces a burst of keystrokes.
// A validation whose document changed meanwhile is dropped, never published. No handler lets an exception escape:
// a failing handler logs and answers empty; a failing validation publishes an "internal error" diagnostic.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import {
  type CodeAction, type CodeLens, type CompletionItem, type Connection, type Diagnostic, DiagnosticSeverity,
  type DocumentSymbol, type Hover, type InitializeResult, TextDocumentSyncKind, TextDocuments,
} from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';

import { codeLenses } from './codelens';
import { complete } from './completion';
import { type Analysis, analyze } from './diagnostics';
import { ConfigDoc } from './document';
import { hfCacheDir } from '../model/hfcache';
import { hover } from './hover';
import { type GpuInfo, detectGpus } from '../model/memory';
import { codeActions } from './quickfix';
import { type Check, type CheckEnv, CHECKS, SOURCE } from './semantic';
import { isSweepFile, sweepDiagnostics } from './sweep';
import { completeSweep, hoverSweep } from './sweepFeatures';
import { documentSymbols } from './symbols';

export interface ServerOptions {
  /** The machine's GPUs; default: nvidia-smi, queried once at startup. */
  gpus?: Promise<GpuInfo[] | null>;
  /** Environment for the Hugging Face cache lookup; default process.env. */
  env?: NodeJS.ProcessEnv;
  checks?: readonly Check[];
  debounce?: { minMs: number; maxMs: number };
  /** Largest document analysed, in characters. */
  maxChars?: number;
}

interface DocState {
  timer?: NodeJS.Timeout;
  costMs: number;
  last?: { version: number; cd: ConfigDoc; analysis: Analysis };
}

export function startServer(connection: Connection, opts: ServerOptions = {}): TextDocuments<TextDocument> {
  const documents = new TextDocuments(TextDocument);
  const states = new Map<string, DocState>();
  const debounce = opts.debounce ?? { minMs: 0, maxMs: 250 };
  // Run configs are a few kB; 64 KiB bounds the parser's worst cases (an unclosed 20k-item flow list) to a fraction of a second.
  const maxChars = opts.maxChars ?? 64 * 1024;
  const checks = opts.checks ?? CHECKS;
  let gpus: GpuInfo[] | null = null;
  const gpusReady = (opts.gpus ?? detectGpus()).then((g) => { gpus = g; }, () => { gpus = null; });
  const env = (): CheckEnv => ({ cacheDir: hfCacheDir(opts.env ?? process.env), gpus, totalMemBytes: os.totalmem() });

  const log = (what: string, err: unknown): void => {
    connection.console.error(`${what}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  };

  function analysisOf(doc: TextDocument): { cd: ConfigDoc; analysis: Analysis } {
    const st = states.get(doc.uri) ?? { costMs: 0 };
    states.set(doc.uri, st);
    if (st.last && st.last.version === doc.version) return st.last;
    const t0 = performance.now();
    const cd = ConfigDoc.parse(doc);
    let analysis: Analysis;
    if (doc.getText().length > maxChars) {
      analysis = { facts: null, value: null, diagnostics: [{ range: cd.firstLineRange(), severity: DiagnosticSeverity.Error, source: SOURCE,
        code: 'too-large', message: `the config is too large to analyse: it has ${doc.getText().length} characters; hqlora analyses configs up to ${maxChars}` }] };
    } else {
      try {
        analysis = analyze(cd, env(), checks);
      } catch (err) {
        log('analysis failed', err);
        analysis = { facts: null, value: null, diagnostics: [{ range: cd.firstLineRange(), severity: DiagnosticSeverity.Error, source: SOURCE,
          code: 'internal-error', message: `internal error in check analysis: ${err instanceof Error ? err.message : String(err)}` }] };
      }
    }
    st.costMs = performance.now() - t0;
    st.last = { version: doc.version, cd, analysis };
    return st.last;
  }

  async function validate(uri: string): Promise<void> {
    await gpusReady;
    const doc = documents.get(uri);
    if (!doc) return;
    const file = uri.startsWith('file:') ? fileURLToPath(uri) : uri;
    if (isSweepFile(file)) {
      const sweepDiags = await sweepDiagnostics(file, doc.getText());
      if (documents.get(uri)?.version !== doc.version) return;
      await connection.sendDiagnostics({ uri, version: doc.version, diagnostics: sweepDiags });
      return;
    }
    const { analysis } = analysisOf(doc);
    if (documents.get(uri)?.version !== doc.version) return; // superseded: the newer change schedules its own run
    const diagnostics: Diagnostic[] = analysis.diagnostics;
    await connection.sendDiagnostics({ uri, version: doc.version, diagnostics });
  }

  function schedule(uri: string): void {
    const st = states.get(uri) ?? { costMs: 0 };
    states.set(uri, st);
    if (st.timer) clearTimeout(st.timer);
    const delay = Math.min(debounce.maxMs, Math.max(debounce.minMs, 2 * st.costMs));
    st.timer = setTimeout(() => {
      st.timer = undefined;
      validate(uri).catch((err: unknown) => log(`validation of ${uri} failed`, err));
    }, delay);
  }

  connection.onInitialize((): InitializeResult => ({
    capabilities: {
      textDocumentSync: TextDocumentSyncKind.Incremental,
      completionProvider: { triggerCharacters: [':', ' ', '/', '[', ',', '-', '"'] },
      hoverProvider: true,
      codeLensProvider: { resolveProvider: false },
      documentSymbolProvider: true,
      codeActionProvider: { codeActionKinds: ['quickfix'] },
    },
    serverInfo: { name: 'hqlora-config', version: '0.1.0' },
  }));

  documents.onDidChangeContent((e) => schedule(e.document.uri));
  documents.onDidClose((e) => {
    const st = states.get(e.document.uri);
    if (st?.timer) clearTimeout(st.timer);
    states.delete(e.document.uri);
    void connection.sendDiagnostics({ uri: e.document.uri, diagnostics: [] });
  });

  /** Runs a request handler; an exception is logged and answered with `empty`. */
  function guarded<P extends { textDocument: { uri: string } }, R>(name: string, empty: R, fn: (doc: TextDocument, p: P) => R,
    sweep?: (doc: TextDocument, p: P) => R): (p: P) => R {
    return (p) => {
      const doc = documents.get(p.textDocument.uri);
      if (!doc) return empty;
      // Sweep files: their own completion and hover (sweepFeatures.ts), diagnostics (sweep.ts), no run-config features.
      if (isSweepFile(doc.uri) && !sweep) return empty;
      const handler = isSweepFile(doc.uri) && sweep ? sweep : fn;
      try {
        return handler(doc, p);
      } catch (err) {
        log(`${name} failed`, err);
        return empty;
      }
    };
  }

  connection.onCompletion(guarded('completion', [] as CompletionItem[], (doc, p) => {
    const { cd, analysis } = analysisOf(doc);
    return complete(cd, p.position, { facts: analysis.facts, cacheDir: env().cacheDir });
  }, (doc, p) => completeSweep(ConfigDoc.parse(doc), p.position)));
  connection.onHover(guarded('hover', null as Hover | null, (doc, p) => {
    const { cd, analysis } = analysisOf(doc);
    return hover(cd, p.position, analysis.facts);
  }, (doc, p) => hoverSweep(ConfigDoc.parse(doc), p.position)));
  connection.onCodeLens(guarded('codeLens', [] as CodeLens[], (doc) => codeLenses(analysisOf(doc).cd)));
  connection.onDocumentSymbol(guarded('documentSymbol', [] as DocumentSymbol[], (doc) => documentSymbols(analysisOf(doc).cd)));
  connection.onCodeAction(guarded('codeAction', [] as CodeAction[], (doc, p) => codeActions(doc, p.context.diagnostics)));

  documents.listen(connection);
  return documents;
}
