// html.ts — the dashboard's HTML shell: a strict Content-Security-Policy with a fresh nonce (from crypto) for the
// one script, styles and fonts only from the built assets folder dist/webview (the only localResourceRoot).
import { randomBytes } from 'node:crypto';

import type * as vscode from 'vscode';

export function dashboardHtml(webview: vscode.Webview, assets: vscode.Uri, uri: (base: vscode.Uri, file: string) => vscode.Uri): string {
  const nonce = randomBytes(16).toString('base64');
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  const script = webview.asWebviewUri(uri(assets, 'main.js'));
  const style = webview.asWebviewUri(uri(assets, 'main.css'));
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <meta name="csp-nonce" content="${nonce}">
  <link rel="stylesheet" href="${style.toString()}" nonce="${nonce}">
  <title>H-QLoRA Dashboard</title>
</head>
<body>
  <div id="app" data-state="loading">Loading the H-QLoRA dashboard…</div>
  <script nonce="${nonce}" src="${script.toString()}"></script>
</body>
</html>`;
}
