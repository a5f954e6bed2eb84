// previewDocument.ts — the text of the "Preview Data" document and where its trained parts are. The text is
// formatPreview's (data/preview.ts) with the trained parts between « and »; the ranges (the text between each pair)
// let the editor highlight them. No vscode import (test/unit covers it).
import { type DataPreview, formatPreview } from '../data/preview';

export const OPEN = '«';
export const CLOSE = '»';

// formatPreview is asked for control-character sentinels, which are unambiguous, then each is swapped for the
// visible marker while its offset is recorded. Sentinels inside the data are dropped from the copy first.
const S_OPEN = '\u0001';
const S_CLOSE = '\u0002';

export interface PreviewDocument {
  text: string;
  /** [start, end) offsets in `text` of every trained part (inside its markers). */
  trained: [number, number][];
}

export function previewDocument(p: DataPreview): PreviewDocument {
  const clean: DataPreview = {
    ...p,
    examples: p.examples.map((ex) => ({ ...ex, segments: ex.segments.map((s) => ({ ...s, text: s.text.replaceAll(S_OPEN, '').replaceAll(S_CLOSE, '') })) })),
  };
  const raw = formatPreview(clean, S_OPEN, S_CLOSE);
  const trained: [number, number][] = [];
  let text = '';
  let start = -1;
  let from = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== S_OPEN && c !== S_CLOSE) continue;
    text += raw.slice(from, i);
    from = i + 1;
    if (c === S_OPEN) {
      text += OPEN;
      start = text.length;
    } else {
      // The header line's «trained» legend is a pair too; only example bodies (after the first line) are ranges.
      if (start >= 0 && text.lastIndexOf('\n', start) >= 0 && text.length > start) trained.push([start, text.length]);
      text += CLOSE;
      start = -1;
    }
  }
  text += raw.slice(from);
  return { text, trained };
}
