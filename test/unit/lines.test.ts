// lines.test.ts — the one line splitter (pipes and tailed files) must never lose or merge lines, whatever the chunking.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { LineSplitter } from '../../extension/core/lines';

describe('LineSplitter', () => {
  it('joins a line split across chunks', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('{"a":'), []);
    assert.deepEqual(s.push('1}\n{"b"'), ['{"a":1}']);
    assert.deepEqual(s.push(':2}\n'), ['{"b":2}']);
    assert.deepEqual(s.end(), []);
  });

  it('handles CRLF, empty lines and an unterminated last line', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push('a\r\n\nb'), ['a', '']);
    assert.deepEqual(s.end(), ['b']);
  });

  it('gives the same lines for every chunking of a stream', () => {
    const text = '{"type":"step","step":1}\n{"type":"step","step":2}\n\n{"type":"done"}\n';
    const expected = text.split('\n').slice(0, -1);
    for (let size = 1; size <= text.length; size++) {
      const s = new LineSplitter();
      const got: string[] = [];
      for (let i = 0; i < text.length; i += size) got.push(...s.push(text.slice(i, i + size)));
      got.push(...s.end());
      assert.deepEqual(got, expected, `chunk size ${size}`);
    }
  });

  it('gives the same lines for every byte chunking of UTF-8 text (multi-byte characters split across chunks)', () => {
    const text = '{"message":"Grüße – 日本語 🦙"}\n{"type":"done"}\r\nlast ✓';
    const bytes = Buffer.from(text, 'utf8');
    const expected = ['{"message":"Grüße – 日本語 🦙"}', '{"type":"done"}', 'last ✓'];
    for (let size = 1; size <= bytes.length; size++) {
      const s = new LineSplitter();
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...s.push(bytes.subarray(i, i + size)));
      got.push(...s.end());
      assert.deepEqual(got, expected, `chunk size ${size}`);
    }
  });

  it('ends a stream cut inside a UTF-8 sequence with U+FFFD instead of dropping the line', () => {
    const s = new LineSplitter();
    const llama = Buffer.from('a🦙', 'utf8');
    assert.deepEqual(s.push(llama.subarray(0, 3)), []);
    assert.deepEqual(s.end(), ['a\uFFFD']);
  });
});
