/**
 * src/config.ts, checked exhaustively where the space is small and against deliberately naive
 * reimplementations (etcd quorum/quick_test.go style) where it is not. Every naive version
 * below counts with `2 * count > n` rather than reusing ⌊n/2⌋ + 1.
 */
import { expect } from 'chai';
import { Rng } from '../src/rng.js';
import {
  allowConfig,
  committedIndex,
  hasQuorum,
  isVoter,
  jointConfig,
  quorumSize,
  sameMembers,
  stableConfig,
  voteResult,
  voters,
  type Config,
  type VoteResult,
} from '../src/config.js';

const POOL = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

/** Every subset of `ids`, as a Set. */
function* subsets(ids: readonly string[]): Generator<Set<string>> {
  for (let mask = 0; mask < 1 << ids.length; mask++) {
    yield new Set(ids.filter((_, i) => (mask & (1 << i)) !== 0));
  }
}

/** Every assignment of one of `values` to each id (values.length ** ids.length of them). */
function* assignments<T>(ids: readonly string[], values: readonly T[]): Generator<Map<string, T>> {
  const total = values.length ** ids.length;
  for (let n = 0; n < total; n++) {
    const m = new Map<string, T>();
    let rest = n;
    for (const id of ids) {
      m.set(id, values[rest % values.length]!);
      rest = Math.floor(rest / values.length);
    }
    yield m;
  }
}

const naiveMajority = (group: readonly string[], has: (id: string) => boolean): boolean =>
  2 * group.filter(has).length > group.length;

/** (old, new) memberships for every pair of sizes 1..4: nested, overlapping, disjoint. */
function jointPairs(maxSize = 4): { old: string[]; new: string[] }[] {
  const pairs: { old: string[]; new: string[] }[] = [];
  for (let o = 1; o <= maxSize; o++) {
    for (let n = 1; n <= maxSize; n++) {
      const old = POOL.slice(0, o);
      // Shift the new group's start from 0 (greatest overlap) to o (disjoint).
      for (let shift = 0; shift <= o; shift++) pairs.push({ old, new: POOL.slice(shift, shift + n) });
    }
  }
  return pairs;
}

const show = (c: Config): string =>
  c.kind === 'stable' ? `stable[${c.voters.join('')}]` : `joint[${c.old.join('')}|${c.new.join('')}]`;

describe('config: quorumSize', () => {
  it('is 1,2,2,3,3,4,4 for 1..7 voters', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(quorumSize)).to.deep.equal([1, 2, 2, 3, 3, 4, 4]);
  });

  it('is the smallest count that is a strict majority, for 1..101 voters', () => {
    for (let n = 1; n <= 101; n++) {
      const q = quorumSize(n);
      expect(2 * q > n, `n=${n}: ${q} is a majority`).to.equal(true);
      expect(2 * (q - 1) > n, `n=${n}: ${q - 1} is not`).to.equal(false);
    }
  });

  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`throws RangeError for ${bad}`, () => {
      expect(() => quorumSize(bad)).to.throw(RangeError, /positive integer/);
    });
  }
});

describe('config: hasQuorum, stable', () => {
  it('for every subset of 1..7 voters, equals |subset| >= ⌊n/2⌋ + 1', () => {
    let checked = 0;
    for (let n = 1; n <= 7; n++) {
      const ids = POOL.slice(0, n);
      const config = stableConfig(ids);
      for (const subset of subsets(ids)) {
        const expected = subset.size >= Math.floor(n / 2) + 1;
        expect(hasQuorum(config, (id) => subset.has(id)), `n=${n} {${[...subset].join('')}}`).to.equal(expected);
        checked++;
      }
    }
    expect(checked).to.equal(2 + 4 + 8 + 16 + 32 + 64 + 128);
  });

  it('ignores peers that are not voters', () => {
    const config = stableConfig(['a', 'b', 'c']);
    expect(hasQuorum(config, (id) => ['a', 'x', 'y', 'z'].includes(id))).to.equal(false);
    expect(hasQuorum(config, (id) => ['a', 'c', 'x'].includes(id))).to.equal(true);
  });

  it('throws RangeError for a configuration without voters (no majority exists)', () => {
    expect(() => hasQuorum(stableConfig([]), () => true)).to.throw(RangeError);
  });
});

describe('config: hasQuorum, joint (§6)', () => {
  it('for every (old, new) pair of sizes 1..4 and every subset, is majority(old) AND majority(new)', () => {
    let checked = 0;
    let wonOldOnly = 0;
    let wonNewOnly = 0;
    for (const pair of jointPairs()) {
      const config = jointConfig(pair.old, pair.new);
      for (const subset of subsets(voters(config))) {
        const has = (id: string): boolean => subset.has(id);
        const inOld = naiveMajority(pair.old, has);
        const inNew = naiveMajority(pair.new, has);
        if (inOld && !inNew) wonOldOnly++;
        if (inNew && !inOld) wonNewOnly++;
        expect(hasQuorum(config, has), `${show(config)} {${[...subset].join('')}}`).to.equal(inOld && inNew);
        checked++;
      }
    }
    // The sample really contains the cases where one majority alone must not be enough.
    expect(wonOldOnly).to.be.greaterThan(100);
    expect(wonNewOnly).to.be.greaterThan(100);
    expect(checked).to.be.greaterThan(1500);
  });

  it('a majority of the union is not enough (disjoint 3 + 3)', () => {
    const config = jointConfig(['a', 'b', 'c'], ['d', 'e', 'f']);
    // 4 of 6 is a majority of the union, but only 1 of the new voters.
    expect(hasQuorum(config, (id) => ['a', 'b', 'c', 'd'].includes(id))).to.equal(false);
    expect(hasQuorum(config, (id) => ['a', 'b', 'd', 'e'].includes(id))).to.equal(true);
  });
});

describe('config: committedIndex', () => {
  /** Naive: for k from the highest match down, the first k that a majority has reached. */
  function naiveGroupAt(group: readonly string[], match: ReadonlyMap<string, number>, k: number): boolean {
    return 2 * group.filter((id) => match.get(id)! >= k).length > group.length;
  }
  function naiveCommitted(config: Config, match: ReadonlyMap<string, number>): number {
    const groups = config.kind === 'stable' ? [config.voters] : [config.old, config.new];
    const max = Math.max(...groups.flat().map((id) => match.get(id)!));
    for (let k = max; k > 0; k--) {
      if (groups.every((g) => naiveGroupAt(g, match, k))) return k;
    }
    return 0;
  }

  function check(config: Config, match: ReadonlyMap<string, number>, label: string): void {
    const got = committedIndex(config, (id) => {
      const m = match.get(id);
      if (m === undefined) throw new Error(`matchOf asked about non-voter ${id}`);
      return m;
    });
    expect(got, `${label} ${show(config)} ${JSON.stringify([...match])}`).to.equal(naiveCommitted(config, match));
  }

  it('matches the naive version for every match assignment (0..4) of 1..5 stable voters', () => {
    let checked = 0;
    for (let n = 1; n <= 5; n++) {
      const ids = POOL.slice(0, n);
      for (const match of assignments(ids, [0, 1, 2, 3, 4])) {
        check(stableConfig(ids), match, 'exhaustive');
        checked++;
      }
    }
    expect(checked).to.equal(5 + 25 + 125 + 625 + 3125);
  });

  it('matches the naive version for every match assignment (0..2) of joint configs up to 3 + 3', () => {
    let checked = 0;
    for (const pair of jointPairs(3)) {
      const config = jointConfig(pair.old, pair.new);
      for (const match of assignments(voters(config), [0, 1, 2])) {
        check(config, match, 'exhaustive');
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(2000);
  });

  it('is the smaller of the two majorities when joint', () => {
    const config = jointConfig(['a', 'b', 'c'], ['c', 'd', 'e']);
    const match = new Map([
      ['a', 9],
      ['b', 9],
      ['c', 4],
      ['d', 2],
      ['e', 1],
    ]);
    // old reaches 9 (a, b), new only 2 (c, d).
    expect(committedIndex(config, (id) => match.get(id)!)).to.equal(2);
  });

  it('matches the naive version on 50 000 seeded random cases, stable and joint, up to 7 voters', () => {
    const SEED = 0x5eed_c0de;
    const rand = mulberry32(SEED);
    const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
    const pick = (ids: readonly string[]): string[] => {
      const shuffled = [...ids];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = int(0, i);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      return shuffled.slice(0, int(1, ids.length));
    };
    const seven = POOL.slice(0, 7);
    let joint = 0;
    for (let i = 0; i < 50_000; i++) {
      const config = rand() < 0.5 ? stableConfig(pick(seven)) : jointConfig(pick(seven), pick(seven));
      if (config.kind === 'joint') joint++;
      // A narrow range gives many ties; a wide one gives large indexes.
      const hi = rand() < 0.5 ? 3 : 1000;
      const match = new Map(voters(config).map((id) => [id, int(0, hi)] as const));
      check(config, match, `SEED=${SEED} case=${i}`);
    }
    expect(joint).to.be.within(20_000, 30_000);
  });
});

describe('config: voteResult', () => {
  type Answer = 'yes' | 'no' | 'missing';
  function votesOf(assign: ReadonlyMap<string, Answer>): Map<string, boolean> {
    const votes = new Map<string, boolean>();
    for (const [id, a] of assign) if (a !== 'missing') votes.set(id, a === 'yes');
    return votes;
  }
  function naiveGroup(group: readonly string[], assign: ReadonlyMap<string, Answer>): VoteResult {
    const yes = group.filter((id) => assign.get(id) === 'yes').length;
    const no = group.filter((id) => assign.get(id) === 'no').length;
    if (2 * yes > group.length) return 'won';
    // Even if every missing voter said yes, no majority.
    if (2 * (group.length - no) <= group.length) return 'lost';
    return 'pending';
  }
  function naive(config: Config, assign: ReadonlyMap<string, Answer>): VoteResult {
    const results = (config.kind === 'stable' ? [config.voters] : [config.old, config.new]).map((g) =>
      naiveGroup(g, assign),
    );
    if (results.every((r) => r === 'won')) return 'won';
    if (results.some((r) => r === 'lost')) return 'lost';
    return 'pending';
  }
  const ANSWERS: readonly Answer[] = ['yes', 'no', 'missing'];

  it('matches the naive version for every yes/no/missing assignment of 1..5 stable voters', () => {
    const seen = new Set<VoteResult>();
    let checked = 0;
    for (let n = 1; n <= 5; n++) {
      const ids = POOL.slice(0, n);
      for (const assign of assignments(ids, ANSWERS)) {
        const got = voteResult(stableConfig(ids), votesOf(assign));
        expect(got, `n=${n} ${JSON.stringify([...assign])}`).to.equal(naive(stableConfig(ids), assign));
        seen.add(got);
        checked++;
      }
    }
    expect(checked).to.equal(3 + 9 + 27 + 81 + 243);
    expect([...seen].sort()).to.deep.equal(['lost', 'pending', 'won']);
  });

  it('matches the naive version for every assignment over joint configs with up to 5 voters', () => {
    let checked = 0;
    for (const pair of jointPairs(3)) {
      const config = jointConfig(pair.old, pair.new);
      const ids = voters(config);
      if (ids.length > 5) continue;
      for (const assign of assignments(ids, ANSWERS)) {
        expect(voteResult(config, votesOf(assign)), `${show(config)} ${JSON.stringify([...assign])}`).to.equal(
          naive(config, assign),
        );
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(1000);
  });

  it('ignores votes from peers that are not voters', () => {
    const config = stableConfig(['a', 'b', 'c']);
    const strangers = new Map([
      ['a', true],
      ['x', true],
      ['y', true],
    ]);
    expect(voteResult(config, strangers)).to.equal('pending');
    const refusals = new Map([
      ['a', true],
      ['x', false],
      ['y', false],
    ]);
    expect(voteResult(config, refusals)).to.equal('pending');
  });

  it('single voter: its own yes wins, its no loses, silence is pending', () => {
    const config = stableConfig(['a']);
    expect(voteResult(config, new Map([['a', true]]))).to.equal('won');
    expect(voteResult(config, new Map([['a', false]]))).to.equal('lost');
    expect(voteResult(config, new Map())).to.equal('pending');
  });
});

describe('config: voters and isVoter', () => {
  it('stable: the voters, as a copy', () => {
    const input = ['a', 'b', 'c'];
    const config = stableConfig(input);
    input.push('z');
    const v = voters(config);
    expect(v).to.deep.equal(['a', 'b', 'c']);
    v.push('y');
    expect(voters(config)).to.deep.equal(['a', 'b', 'c']);
  });

  it('joint: the union of old and new, each once, old first', () => {
    expect(voters(jointConfig(['a', 'b', 'c'], ['b', 'c', 'd', 'e']))).to.deep.equal(['a', 'b', 'c', 'd', 'e']);
    expect(voters(jointConfig(['a', 'b'], ['c']))).to.deep.equal(['a', 'b', 'c']);
    expect(voters(jointConfig(['a', 'b'], ['b', 'a']))).to.deep.equal(['a', 'b']);
  });

  it('joint: no duplicates and exactly the union, for every pair of the pool', () => {
    for (const pair of jointPairs()) {
      const v = voters(jointConfig(pair.old, pair.new));
      expect(new Set(v).size, JSON.stringify(pair)).to.equal(v.length);
      expect(new Set(v)).to.deep.equal(new Set([...pair.old, ...pair.new]));
    }
  });

  it('isVoter: stable', () => {
    const config = stableConfig(['a', 'b']);
    expect(isVoter(config, 'a')).to.equal(true);
    expect(isVoter(config, 'b')).to.equal(true);
    expect(isVoter(config, 'c')).to.equal(false);
    expect(isVoter(config, '')).to.equal(false);
  });

  it('isVoter: joint counts old-only, new-only and both', () => {
    const config = jointConfig(['a', 'b'], ['b', 'c']);
    expect(isVoter(config, 'a'), 'old only').to.equal(true);
    expect(isVoter(config, 'b'), 'both').to.equal(true);
    expect(isVoter(config, 'c'), 'new only').to.equal(true);
    expect(isVoter(config, 'd'), 'neither').to.equal(false);
  });

  it('isVoter agrees with voters() for every pool member and pair', () => {
    for (const pair of jointPairs()) {
      const config = jointConfig(pair.old, pair.new);
      for (const id of POOL) expect(isVoter(config, id)).to.equal(voters(config).includes(id));
    }
  });
});

describe('config: allowConfig', () => {
  const stable = stableConfig(['a', 'b', 'c']);
  const joint = jointConfig(['a', 'b', 'c'], ['a', 'b', 'd']);

  it('refuses an empty list, whatever the current config', () => {
    for (const current of [null, stable, joint]) {
      expect(allowConfig(current, [])).to.deep.equal({ ok: false, reason: 'empty' });
    }
  });

  it('refuses duplicates, whatever the current config', () => {
    expect(allowConfig(null, ['a', 'a'])).to.deep.equal({ ok: false, reason: 'duplicate' });
    expect(allowConfig(stable, ['a', 'b', 'd', 'b'])).to.deep.equal({ ok: false, reason: 'duplicate' });
    expect(allowConfig(joint, ['x', 'x'])).to.deep.equal({ ok: false, reason: 'duplicate' });
  });

  it('refuses the same members, in any order, as notModified', () => {
    expect(allowConfig(stable, ['a', 'b', 'c'])).to.deep.equal({ ok: false, reason: 'notModified' });
    expect(allowConfig(stable, ['c', 'a', 'b'])).to.deep.equal({ ok: false, reason: 'notModified' });
  });

  it('refuses any change while a joint phase is in progress', () => {
    expect(allowConfig(joint, ['a', 'b', 'd'])).to.deep.equal({ ok: false, reason: 'configInProgress' });
    expect(allowConfig(joint, ['x'])).to.deep.equal({ ok: false, reason: 'configInProgress' });
  });

  it('allows any valid list on a blank peer', () => {
    expect(allowConfig(null, ['a'])).to.deep.equal({ ok: true });
    expect(allowConfig(null, ['a', 'b', 'c'])).to.deep.equal({ ok: true });
  });

  it('allows a real change of a stable config: add, remove, replace', () => {
    expect(allowConfig(stable, ['a', 'b', 'c', 'd'])).to.deep.equal({ ok: true });
    expect(allowConfig(stable, ['a', 'b'])).to.deep.equal({ ok: true });
    expect(allowConfig(stable, ['a', 'b', 'd'])).to.deep.equal({ ok: true });
    expect(allowConfig(stable, ['x'])).to.deep.equal({ ok: true });
  });
});

describe('config: sameMembers', () => {
  it('compares as sets of members, ignoring order', () => {
    expect(sameMembers(['a', 'b'], ['b', 'a'])).to.equal(true);
    expect(sameMembers([], [])).to.equal(true);
    expect(sameMembers(['a'], ['a', 'b'])).to.equal(false);
    expect(sameMembers(['a', 'b'], ['a', 'c'])).to.equal(false);
  });

  it('is not fooled by duplicates of equal length', () => {
    expect(sameMembers(['a', 'a'], ['a', 'b'])).to.equal(false);
    expect(sameMembers(['a', 'b'], ['a', 'a'])).to.equal(false);
  });
});
