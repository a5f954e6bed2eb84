// webview-run-facts.test.ts — the dashboard header's data-parallel facts (webview/components/runFacts.ts): the global
// throughput with the world size, and each rank's memory in rank order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatMemory, formatRankMemory, formatThroughput } from '../../webview/components/runFacts';

describe('run facts', () => {
  it('shows the global throughput, with the ranks of a data-parallel run', () => {
    assert.equal(formatThroughput({ tokensPerS: 12345.6, ranks: 1 }), '12,346 tok/s');
    assert.equal(formatThroughput({ tokensPerS: 98765.4, ranks: 4 }), '98,765 tok/s on 4 ranks');
    assert.equal(formatThroughput({ tokensPerS: null, ranks: 1 }), '—');
    assert.equal(formatThroughput({ tokensPerS: null, ranks: 2 }), '— on 2 ranks');
  });

  it("lists each rank's memory in rank order, or the one process's", () => {
    assert.equal(formatRankMemory([]), '—');
    assert.equal(formatRankMemory([1.5 * 2 ** 30]), '1.50 GiB');
    assert.equal(formatRankMemory([1.5 * 2 ** 30, 20.25 * 2 ** 30]), 'rank 0 1.50 GiB · rank 1 20.3 GiB');
    assert.equal(formatMemory(512), '512 B');
    assert.equal(formatMemory(3 * 2 ** 20), '3.00 MiB');
  });
});
