// preview.ts — the first N training examples as the model will see them: the rendered text split into masked
// (context only) and trained (loss) parts, with token counts. Backs `hqlora preview-data` and the extension's
// "Preview Data". It runs the same reading, templates and masking as prepareData, without writing anything.
import { readExamples } from './formats';
import { type DataSettings, tokenizeExample } from './prepare';
import { DEFAULT_MAX_LINE_BYTES } from './reader';
import { type ModelTokenizer, loadTokenizer } from './tokenizer';

export interface PreviewSegment {
  text: string;
  /** True when these tokens carry the loss (mask 1). */
  trained: boolean;
  tokens: number;
}

export interface PreviewExample {
  file: string;
  line: number;
  segments: PreviewSegment[];
  tokens: number;
  trainedTokens: number;
  truncated: boolean;
}

export interface DataPreview {
  format: string;
  /** Examples in the training data (all of them, not only the previewed ones). */
  totalExamples: number;
  examples: PreviewExample[];
}

/**
 * Splits ids into runs of equal mask and gives each run its text. A run's text is decode(ids[0..end)) minus
 * decode(ids[0..start)), so tokenizers whose decoder strips a leading space (SentencePiece) still read naturally.
 */
export function segmentsOf(tok: Pick<ModelTokenizer, 'decode'>, ids: number[], mask: number[]): PreviewSegment[] {
  const out: PreviewSegment[] = [];
  let prevText = '';
  for (let s = 0; s < ids.length;) {
    let e = s;
    while (e < ids.length && mask[e] === mask[s]) e++;
    const text = tok.decode(ids.slice(0, e));
    out.push({ text: text.startsWith(prevText) ? text.slice(prevText.length) : tok.decode(ids.slice(s, e)), trained: mask[s] === 1, tokens: e - s });
    prevText = text;
    s = e;
  }
  return out;
}

export async function previewData(modelDir: string, data: DataSettings, n: number): Promise<DataPreview> {
  const tok = await loadTokenizer(modelDir);
  const read = await readExamples(data.train, {
    format: data.format ?? 'auto', maxLineBytes: data.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    oasst: { paths: data.oasstPaths ?? 'best', lang: data.oasstLang ?? null, render: data.oasstRender ?? 'guanaco' },
  });
  const examples = read.examples.slice(0, n).map((ex): PreviewExample => {
    const built = tokenizeExample(tok, ex, data);
    return {
      file: ex.file, line: ex.line, segments: segmentsOf(tok, built.ids, built.mask), tokens: built.ids.length,
      trainedTokens: built.mask.reduce((a, b) => a + b, 0), truncated: built.truncatedSource || built.truncatedTarget,
    };
  });
  return { format: read.format, totalExamples: read.examples.length, examples };
}

/** Plain-text rendering: trained parts between `open` and `close` (e.g. ANSI colour codes, or « »). */
export function formatPreview(p: DataPreview, open = '«', close = '»'): string {
  const lines = [`format ${p.format}, ${p.totalExamples} training examples; ${open}trained${close} = tokens with loss, the rest is context`];
  for (const [i, ex] of p.examples.entries()) {
    lines.push('', `── example ${i + 1}  ${ex.file}:${ex.line}  ${ex.tokens} tokens, ${ex.trainedTokens} trained${ex.truncated ? ', truncated' : ''}`);
    lines.push(ex.segments.map((s) => (s.trained ? `${open}${s.text}${close}` : s.text)).join(''));
  }
  return `${lines.join('\n')}\n`;
}
