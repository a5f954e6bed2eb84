// codelens.ts — the code lenses above a run config: "Start H-QLoRA Run" (hqlora.startRun) and "Preview Data"
// (hqlora.previewData), both given the document's URI as a string (the client turns it into a vscode.Uri).
import type { CodeLens } from 'vscode-languageserver';

import type { ConfigDoc } from './document';

export const START_RUN_COMMAND = 'hqlora.startRun';
export const PREVIEW_DATA_COMMAND = 'hqlora.previewData';

export function codeLenses(cd: ConfigDoc): CodeLens[] {
  // Above the first key (line 0 when the document starts with it; after a leading comment block otherwise).
  const contents = cd.doc?.contents as { range?: [number, number, number] } | null | undefined;
  const start = contents?.range ? cd.text.positionAt(contents.range[0]) : { line: 0, character: 0 };
  const range = { start: { line: start.line, character: 0 }, end: { line: start.line, character: 0 } };
  return [
    { range, command: { title: '$(play) Start H-QLoRA Run', command: START_RUN_COMMAND, arguments: [cd.text.uri] } },
    { range, command: { title: '$(preview) Preview Data', command: PREVIEW_DATA_COMMAND, arguments: [cd.text.uri] } },
  ];
}
