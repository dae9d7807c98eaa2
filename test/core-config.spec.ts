/** What a setConfig call means for a peer's core (rafter's set_config), decided purely. */
import { expect } from 'chai';
import { configDecision, createCore, step } from '../src/core/index.js';

describe('configDecision: setConfig on a core', () => {
  it('a blank peer is bootstrapped; once configured, the same members are a no-op', () => {
    let s = createCore({ id: 'a', seed: 1 });
    expect(configDecision(s, ['a', 'b', 'c'])).to.deep.equal({ kind: 'bootstrap' });
    s = step(s, { type: 'bootstrap', peers: ['a', 'b', 'c'] }).state;
    expect(configDecision(s, ['c', 'b', 'a'])).to.deep.equal({ kind: 'unchanged' });
  });

  it('refuses empty lists and duplicates with a code and a reason; a running cluster gets a membership change', () => {
    const blank = createCore({ id: 'a', seed: 1 });
    expect(configDecision(blank, [])).to.include({ kind: 'refused', code: 'CONFIG_INVALID' });
    expect(configDecision(blank, ['a', 'a'])).to.include({ kind: 'refused', code: 'CONFIG_INVALID' });
    const configured = step(createCore({ id: 'a', seed: 1 }), { type: 'bootstrap', peers: ['a', 'b'] }).state;
    expect(configDecision(configured, ['a', 'b', 'c'])).to.deep.equal({ kind: 'change' });
  });

  it('a peer with log entries but no configuration is not bootstrapped again', () => {
    const s = createCore({ id: 'a', seed: 1, term: 3, entries: [{ type: 'noop', index: 1, term: 3 }] });
    const d = configDecision(s, ['a']);
    expect(d).to.include({ kind: 'refused', code: 'CONFIG_INVALID' });
  });
});
