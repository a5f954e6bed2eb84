// csv.ts — RFC 4180 CSV records with the physical line each starts on (for file:line errors).
// Fields are separated by ',', records by LF or CRLF; a field in double quotes may hold ',', newlines and "" (one
// quote). A quote inside an unquoted field is kept literally (pandas' read_csv, which wrote the Hendrycks files,
// does the same). A UTF-8 BOM is skipped; blank lines produce no record.
import { HqError } from '../core/errors';

export interface CsvRecord {
  fields: string[];
  /** 1-based line where the record starts. */
  line: number;
}

export function parseCsv(text: string, file: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let value = '';
      if (text[i] === '"') {
        const openLine = line;
        i++;
        for (;;) {
          if (i >= n) {
            throw new HqError(`unterminated quoted field (opened on line ${openLine})`, { file, line: openLine },
              'close the field with a double quote; a quote inside a quoted field is written ""');
          }
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              value += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          value += c;
          i++;
        }
        if (i < n && text[i] !== ',' && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) {
          throw new HqError(`unexpected character ${JSON.stringify(text[i])} after a closing quote`, { file, line },
            'a quoted field must end right before "," or the end of the line; write a literal quote as ""');
        }
      } else {
        const from = i;
        while (i < n && text[i] !== ',' && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) i++;
        value = text.slice(from, i);
      }
      fields.push(value);
      if (i < n && text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (i < n) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
    }
    if (!(fields.length === 1 && fields[0] === '')) out.push({ fields, line: start });
  }
  return out;
}
