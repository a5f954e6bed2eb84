// webview-shell.test.ts — the one HTML shell of the dashboard and the playground (extension/core/webviewShell.ts):
// its Content-Security-Policy loads nothing by default, runs only the script with this page's nonce, the nonce is
// fresh for every page (crypto) and is the one on the script and stylesheet tags; images only where asked for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { webviewShell } from '../../extension/core/webviewShell';

const webview = { cspSource: 'https://file+.vscode-resource.vscode-cdn.net' };
const opts = {
  script: 'https://file+.vscode-resource.vscode-cdn.net/ext/dist/webview/main.js',
  style: 'https://file+.vscode-resource.vscode-cdn.net/ext/dist/webview/main.css',
  title: 'H-QLoRA Dashboard',
  loading: 'Loading the H-QLoRA dashboard…',
};

interface Page {
  csp: Map<string, string[]>;
  nonce: string;
  scripts: { nonce: string | undefined; src: string | undefined }[];
  styleNonce: string | undefined;
}

function parse(html: string): Page {
  const metas = [...html.matchAll(/<meta http-equiv="Content-Security-Policy" content="([^"]*)">/g)];
  assert.equal(metas.length, 1, 'one CSP meta tag');
  const csp = new Map<string, string[]>();
  for (const d of (metas[0]?.[1] ?? '').split(';').map((s) => s.trim()).filter(Boolean)) {
    const [name = '', ...values] = d.split(/\s+/);
    assert.ok(!csp.has(name), `directive ${name} once`);
    csp.set(name, values);
  }
  const nonce = /<meta name="csp-nonce" content="([^"]+)">/.exec(html)?.[1] ?? '';
  const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map((m) => ({
    nonce: /nonce="([^"]*)"/.exec(m[1] ?? '')?.[1], src: /src="([^"]*)"/.exec(m[1] ?? '')?.[1],
  }));
  const links = [...html.matchAll(/<link\b([^>]*)>/g)];
  assert.equal(links.length, 1, 'one stylesheet');
  return { csp, nonce, scripts, styleNonce: /nonce="([^"]*)"/.exec(links[0]?.[1] ?? '')?.[1] };
}

describe('webviewShell', () => {
  it("allows nothing by default and runs only the one script with this page's nonce", () => {
    const page = parse(webviewShell(webview, opts));
    assert.deepEqual(page.csp.get('default-src'), ["'none'"]);
    assert.match(page.nonce, /^[A-Za-z0-9+/]{22}==$/, '16 random bytes, base64');
    assert.deepEqual(page.csp.get('script-src'), [`'nonce-${page.nonce}'`], 'no host, no unsafe-inline, no unsafe-eval');
    assert.deepEqual(page.scripts, [{ nonce: page.nonce, src: opts.script }]);
    assert.deepEqual(page.csp.get('style-src'), [webview.cspSource, `'nonce-${page.nonce}'`]);
    assert.equal(page.styleNonce, page.nonce);
    assert.deepEqual(page.csp.get('font-src'), [webview.cspSource]);
    assert.equal(page.csp.has('img-src'), false, 'no images unless asked for');
    assert.deepEqual([...page.csp.keys()].sort(), ['default-src', 'font-src', 'script-src', 'style-src']);
  });

  it('makes a fresh nonce for every page', () => {
    const nonces = new Set(Array.from({ length: 50 }, () => parse(webviewShell(webview, opts)).nonce));
    assert.equal(nonces.size, 50);
  });

  it("takes img-src as given (the dashboard's assets and data: URIs)", () => {
    const page = parse(webviewShell(webview, { ...opts, imgSrc: `${webview.cspSource} data:` }));
    assert.deepEqual(page.csp.get('img-src'), [webview.cspSource, 'data:']);
  });

  it('escapes the title and the loading text', () => {
    const html = webviewShell(webview, { ...opts, title: 'a <b> & "c"', loading: '<script>x</script>' });
    assert.match(html, /<title>a &lt;b&gt; &amp; &quot;c&quot;<\/title>/);
    assert.equal(parse(html).scripts.length, 1, 'the loading text adds no script');
  });
});
