/**
 * The core's options (src/core/options.ts): bad values are refused before a peer starts.
 * (The byte limits of the window: core-window.spec.ts; the lease's length: core-leader.spec.ts.)
 */
import { expect } from 'chai';
import { DEFAULT_CORE_OPTIONS, validateCoreOptions, type CoreOptions } from '../src/core/index.js';

describe('core options: validateCoreOptions', function () {
  it('rejects bad values with an error naming the option', function () {
    const bad: [Partial<CoreOptions>, RegExp][] = [
      [{ snapshotThreshold: -1 }, /snapshotThreshold/],
      [{ snapshotThreshold: 1.5 }, /snapshotThreshold/],
      [{ snapshotChunkBytes: 0 }, /snapshotChunkBytes/],
      [{ catchUpTicks: 0 }, /catchUpTicks/],
      [{ preVote: 'yes' as unknown as boolean }, /preVote/],
    ];
    for (const [o, re] of bad) expect(() => validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...o }), JSON.stringify(o)).to.throw(re);
    expect(validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, snapshotThreshold: 0 }).snapshotThreshold, '0: never').to.equal(0);
  });
});
