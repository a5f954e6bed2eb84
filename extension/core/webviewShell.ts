// webviewShell.ts — the one HTML shell of our webviews (the dashboard, the chat playground): a strict
// Content-Security-Policy with a fresh nonce from crypto for each page, one stylesheet and one script, both from the
// built assets folder dist/webview (the panels' only localResourceRoot), and the loading text the script replaces.
// No vscode import: the webview is passed as what the shell reads of it (cspSource), the assets as webview URIs.
import { randomBytes } from 'node:crypto';

export interface WebviewShellOptions {
  /** Webview URI (webview.asWebviewUri) of the one script. */
  script: { toString(): string };
  /** Webview URI of the one stylesheet. */
  style: { toString(): string };
  title: string;
  /** Shown until the script has rendered (div#app, data-state="loading"). */
  loading: string;
  /** Extra img-src sources (e.g. `${webview.cspSource} data:`); none when left out (no images at all). */
  imgSrc?: string;
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

export function webviewShell(webview: { cspSource: string }, opts: WebviewShellOptions): string {
  const nonce = randomBytes(16).toString('base64');
  const csp = [
    "default-src 'none'",
    ...(opts.imgSrc ? [`img-src ${opts.imgSrc}`] : []),
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <meta http-equiv="Content-Security-Policy" content="${csp}">
  <meta name="viewport" content="width=device-width, initial-scale=1.0">
  <meta name="csp-nonce" content="${nonce}">
  <link rel="stylesheet" href="${escapeHtml(opts.style.toString())}" nonce="${nonce}">
  <title>${escapeHtml(opts.title)}</title>
</head>
<body>
  <div id="app" data-state="loading">${escapeHtml(opts.loading)}</div>
  <script nonce="${nonce}" src="${escapeHtml(opts.script.toString())}"></script>
</body>
</html>`;
}
