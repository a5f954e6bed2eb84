// eslint.config.mjs — type-aware lint (typescript-eslint recommendedTypeChecked) plus the import boundaries of the
// layout: webview/ runs in the browser (no vscode, no node:*, nothing from extension/); extension/ never imports
// webview/; both may import schemas/ (the contracts).
import { builtinModules } from 'node:module';

import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// The folders above the job layer (and the host's top-level files).
const UPPER = ['cli', 'commands', 'dashboard', 'registry', 'sweep', 'lsp', 'ctx', 'extension', 'settings', 'statusbar'];
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
  // The layers of extension/ (README "Layout"), top to bottom: nothing imports a folder above it. The lower layers'
  // bans listed here are the edges already gone; each block repeats the webview/ ban (a later block replaces it).
  ...[
    { dirs: ['core'], above: [...UPPER, 'job', 'data', 'eval', 'gguf', 'playground', 'model', 'native'] },
    { dirs: ['model', 'native'], above: [...UPPER, 'job', 'data', 'eval', 'gguf', 'playground'] },
    { dirs: ['job', 'data', 'eval'], above: UPPER },
  ].map(({ dirs, above }) => ({
    files: dirs.map((d) => `extension/${d}/**/*.ts`),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/webview', '**/webview/**'], message: 'extension/ must not import webview/ (share types via schemas/).' },
            {
              group: above.flatMap((d) => [`../${d}`, `../${d}/**`]),
              message: `extension/${dirs.join('/, extension/')}/ sit below ${above.join('/, ')}: import downward only (README "Layout").`,
            },
          ],
        },
      ],
    },
  })),
  {
    // The run-config language server runs in its own Node process: only its client may touch the vscode API.
    files: ['extension/lsp/**/*.ts'],
    ignores: ['extension/lsp/client.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'vscode', message: 'extension/lsp/ is the language server process (no vscode API); only client.ts runs in the host.' }],
          patterns: [{ group: ['**/webview', '**/webview/**'], message: 'extension/ must not import webview/ (share types via schemas/).' }],
        },
      ],
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: {
      sourceType: 'module',
      globals: globals.node,
    },
  },
);
