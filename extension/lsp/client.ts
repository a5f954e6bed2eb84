// client.ts — starts the run-config language server (dist/server.js, its own Node process over IPC) for documents
// of language `hqlora-config` (*.hqlora.yaml, *.hqlora.yml, *.hqlora.json). A crashed server is restarted by
// vscode-languageclient's default error handler (up to 4 restarts in 3 minutes, then it stays down and says so).
import * as vscode from 'vscode';
import { LanguageClient, type LanguageClientOptions, type ServerOptions, TransportKind } from 'vscode-languageclient/node';

export const LANGUAGE_ID = 'hqlora-config';

/** Code lens arguments arrive as URI strings; the extension's commands take a vscode.Uri. */
function uriArgs(lens: vscode.CodeLens): vscode.CodeLens {
  if (lens.command?.arguments) {
    lens.command.arguments = lens.command.arguments.map((a: unknown) => (typeof a === 'string' && /^[a-z][a-z0-9+.-]*:/i.test(a) ? vscode.Uri.parse(a) : a));
  }
  return lens;
}

/**
 * Creates and starts the language client; it is disposed (server stopped) with the extension. A failed start is
 * shown to the user and logged, and does not fail activation: the rest of the extension works without it.
 */
export function startLanguageClient(context: vscode.ExtensionContext, serverModule: string): LanguageClient {
  const serverOptions: ServerOptions = {
    run: { module: serverModule, transport: TransportKind.ipc },
    debug: { module: serverModule, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6019'] } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ language: LANGUAGE_ID }, { scheme: 'file', pattern: '**/*.hqsweep.{yaml,yml}' }],
    middleware: {
      // A lens whose command no part of the extension registers (yet) is hidden rather than failing on click.
      provideCodeLenses: async (doc, token, next) => {
        const [lenses, commands] = await Promise.all([next(doc, token), vscode.commands.getCommands(true)]);
        const known = new Set(commands);
        return lenses?.filter((l) => !l.command || known.has(l.command.command)).map(uriArgs);
      },
    },
  };
  const client = new LanguageClient('hqlora.languageServer', 'H-QLoRA Run Config', serverOptions, clientOptions);
  context.subscriptions.push({ dispose: () => void client.stop() });
  client.start().catch((err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    client.error(`cannot start the H-QLoRA run-config language server (${serverModule})`, err);
    void vscode.window.showErrorMessage(`H-QLoRA: the run-config language server did not start: ${msg}`);
  });
  return client;
}
