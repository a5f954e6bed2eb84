// layers.mjs — the layers of extension/, top to bottom: the one table that eslint.config.mjs (no-restricted-imports)
// and test/unit/layering.test.ts (every import of extension/ and webview/, back-edges and circles) both check.
// A module is a folder of extension/ or one of its top-level files (without .ts). A module imports only modules of
// the layers below its own: never one of its own layer, never one above.
export const LAYERS = [
  ['extension'], //                           the composition root (activate)
  ['commands', 'cli'], //                     the palette commands; `hqlora` (the same layers below, without vscode)
  ['ctx'], //                                 the one long-lived object the commands act on
  ['dashboard', 'playground', 'statusbar', 'lsp'], // webview hosts, the status bar, the language server
  ['sweep'], //                               rank-split sweeps (cells are jobs, the registry's process checks)
  ['registry'], //                            the run registry: run manager, tailing, history, re-attach
  ['job', 'settings'], //                     one run's (or evaluation's) preparation and launch; the typed settings
  ['gguf', 'eval'], //                        GGUF export + verification; multiple-choice data and its table
  ['data', 'llama'], //                       dataset -> token file; llama.cpp in its own process
  ['model', 'native'], //                     the model lookup and facts; the addon and its reports
  ['core'], //                                the ground: errors, schemas, wording, lines, formatting
];

/** Layer index of each module (0 = top). */
export const LAYER_OF = new Map(LAYERS.flatMap((mods, i) => mods.map((m) => [m, i])));
