// eslint.config.mjs — type-aware lint (typescript-eslint recommendedTypeChecked) plus the import boundaries of the
// layout: webview/ runs in the browser (no vscode, no node:*, nothing from extension/); extension/ never imports
// webview/; both may import schemas/ (the contracts); the modules of extension/ import downward only, by the layers
// of scripts/layers.mjs.
import { existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';

import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

import { LAYERS, LAYER_OF } from './scripts/layers.mjs';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];

export default defineConfig(
  { ignores: ['dist/', 'out/', 'node_modules/', 'native/', 'runs/', 'schemas/generated/', '.vscode-test/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises that the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  {
    files: ['webview/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'vscode', message: 'webview/ runs in the browser: talk to the host through the typed protocol, not vscode.' },
            ...nodeBuiltins.map((name) => ({ name, message: 'webview/ runs in the browser: no Node built-ins.' })),
          ],
          patterns: [
            { group: ['**/extension', '**/extension/**'], message: 'webview/ must not import extension/ (share types via schemas/).' },
          ],
        },
      ],
    },
  },
  {
    files: ['extension/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/webview', '**/webview/**'], message: 'extension/ must not import webview/ (share types via schemas/).' }] },
      ],
    },
  },
  // The layers of extension/ (scripts/layers.mjs, README "Layering"), top to bottom: a module imports only the layers
  // below its own. One block per module, each repeating the webview/ ban (a later block replaces the rule); the
  // language server's block also bans vscode (its own process; only client.ts runs in the host).
  // test/unit/layering.test.ts checks the same table on the resolved import graph, and import circles.
  ...LAYERS.flat().flatMap((mod) => {
    const isFolder = existsSync(path.join(import.meta.dirname, 'extension', mod));
    const banned = LAYERS.flat().filter((m) => m !== mod && (LAYER_OF.get(m) ?? 0) <= (LAYER_OF.get(mod) ?? 0));
    const up = isFolder ? '..' : '.';
    const rule = (paths) => ({
      'no-restricted-imports': [
        'error',
        {
          paths,
          patterns: [
            { group: ['**/webview', '**/webview/**'], message: 'extension/ must not import webview/ (share types via schemas/).' },
            ...(banned.length === 0 ? [] : [{
              group: banned.flatMap((m) => [`${up}/${m}`, `${up}/${m}/**`]),
              message: `extension/${mod} imports only the layers below its own (scripts/layers.mjs), not ${banned.join(', ')}.`,
            }]),
          ],
        },
      ],
    });
    const files = [isFolder ? `extension/${mod}/**/*.ts` : `extension/${mod}.ts`];
    if (mod !== 'lsp') return [{ files, rules: rule([]) }];
    return [
      {
        files,
        ignores: ['extension/lsp/client.ts'],
        rules: rule([{ name: 'vscode', message: 'extension/lsp/ is the language server process (no vscode API); only client.ts runs in the host.' }]),
      },
      { files: ['extension/lsp/client.ts'], rules: rule([]) },
    ];
  }),
  {
    files: ['**/*.mjs'],
    languageOptions: {
      sourceType: 'module',
      globals: globals.node,
    },
  },
);
