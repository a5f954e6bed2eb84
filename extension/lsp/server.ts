// server.ts — entry point of the run-config language server (dist/server.js), its own process. The transport
// comes from the command line as vscode-languageclient passes it (--node-ipc, --stdio, --socket=N).
import { ProposedFeatures, createConnection } from 'vscode-languageserver/node';

import { startServer } from './service';

const connection = createConnection(ProposedFeatures.all);
// Last line of defence: a bug must show up in the log, not kill every open editor's diagnostics.
process.on('uncaughtException', (err) => connection.console.error(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => connection.console.error(`unhandled rejection: ${String(err)}`));
startServer(connection);
connection.listen();
