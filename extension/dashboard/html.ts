// html.ts — the dashboard's page: the one webview shell (core/webviewShell.ts: a nonce CSP, one stylesheet, one
// script) with main.js / main.css from dist/webview (the only localResourceRoot) and images from there or data: URIs.
import type * as vscode from 'vscode';

import { webviewShell } from '../core/webviewShell';

export function dashboardHtml(webview: vscode.Webview, assets: vscode.Uri, uri: (base: vscode.Uri, file: string) => vscode.Uri): string {
  return webviewShell(webview, {
    script: webview.asWebviewUri(uri(assets, 'main.js')),
    style: webview.asWebviewUri(uri(assets, 'main.css')),
    title: 'H-QLoRA Dashboard',
    loading: 'Loading the H-QLoRA dashboard…',
    imgSrc: `${webview.cspSource} data:`,
  });
}
