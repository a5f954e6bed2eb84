// format.test.ts — progress formatting shared by the CLI and the status bar.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatBytes, formatDuration, formatStep, num } from '../../extension/core/format';

describe('format', () => {
  it('decodes the non-finite number strings of the event schema', () => {
    assert.ok(Number.isNaN(num('NaN')));
    assert.equal(num('Infinity'), Infinity);
    assert.equal(num('-Infinity'), -Infinity);
    assert.equal(num(1.5), 1.5);
  });

  it('formats durations and sizes', () => {
    assert.equal(formatDuration(42.4), '42s');
    assert.equal(formatDuration(185), '3m05s');
    assert.equal(formatDuration(3720), '1h02m');
    assert.equal(formatDuration(NaN), '?');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(50 * 1024 * 1024), '50.0 MiB');
  });

  it('puts step, loss, tokens/s and ETA on one progress line', () => {
    const line = formatStep({
      v: 1, type: 'step', time: 0, step: 12, total_steps: 150, loss: 2.34567, lr: 0.0002, grad_norm: 1,
      tokens: 100, tokens_per_s: 1234.4, elapsed_s: 10, eta_s: 62, memory_bytes: 0,
    });
    assert.equal(line, 'step 12/150  loss 2.3457  lr 2.0e-4  1234 tok/s  ETA 1m02s');
    assert.ok(!line.includes('\n'));
  });
});
