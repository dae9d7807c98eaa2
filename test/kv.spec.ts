/**
 * src/state-machines/kv.ts (the built-in kv) and src/state-machines/index.ts (loading a
 * state machine by spec, with the fixtures in test/fixtures/).
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { InvalidCommandError, isRaftError } from '../src/errors.js';
import { decodeCommand, encodeCommand } from '../src/codec.js';
import { loadStateMachine } from '../src/state-machines/index.js';
import {
  createStateMachine,
  deepEqual,
  KvStateMachine,
  validateKvCommand,
  type KvCommand,
} from '../src/state-machines/kv.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}.js`, import.meta.url));

/** What a consensus actor sees: the command after a trip through the codec. */
const viaCodec = (c: unknown): unknown => decodeCommand(encodeCommand(c));

/** Every key's value, read back through `get`, for comparing whole states. */
function dump(kv: KvStateMachine, keys: readonly string[]): unknown[] {
  return keys.map((key) => kv.apply({ type: 'get', key }));
}

describe('kv: commands', () => {
  let kv: KvStateMachine;
  beforeEach(() => {
    kv = createStateMachine();
  });

  it('createStateMachine returns a fresh, empty KvStateMachine each time', () => {
    const other = createStateMachine();
    expect(kv).to.be.instanceOf(KvStateMachine);
    expect(other).to.not.equal(kv);
    kv.apply({ type: 'set', key: 'a', value: 1 });
    expect(other.apply({ type: 'get', key: 'a' })).to.equal(null);
    expect(other.size).to.equal(0);
  });

  it('set returns null and get returns the value', () => {
    expect(kv.apply({ type: 'set', key: 'a', value: 'x' })).to.equal(null);
    expect(kv.apply({ type: 'get', key: 'a' })).to.equal('x');
    expect(kv.size).to.equal(1);
  });

  it('set overwrites', () => {
    kv.apply({ type: 'set', key: 'a', value: 1 });
    expect(kv.apply({ type: 'set', key: 'a', value: 2 })).to.equal(null);
    expect(kv.apply({ type: 'get', key: 'a' })).to.equal(2);
    expect(kv.size).to.equal(1);
  });

  it('get of a missing key returns null, not undefined', () => {
    const got = kv.apply({ type: 'get', key: 'nope' });
    expect(got).to.equal(null);
    expect(got).to.not.equal(undefined);
  });

  it('keys are exact strings: empty, unicode, case-sensitive, "__proto__"', () => {
    const keys = ['', 'Key', 'key', 'ключ', '🔑', '__proto__', 'constructor'];
    keys.forEach((key, i) => kv.apply({ type: 'set', key, value: i }));
    expect(dump(kv, keys)).to.deep.equal(keys.map((_, i) => i));
    expect(kv.size).to.equal(keys.length);
  });

  it('stores any msgpack value and gives it back after a codec trip', () => {
    const values: unknown[] = [
      null,
      false,
      0,
      -1.5,
      2n ** 60n,
      '',
      'text',
      [1, [2, [3]]],
      { a: { b: null } },
      new Uint8Array([1, 2, 3]),
      new Date(0),
      new Map<unknown, unknown>([
        [1, 'one'],
        ['two', [2]],
      ]),
    ];
    values.forEach((value, i) => expect(kv.apply(viaCodec({ type: 'set', key: `k${i}`, value }))).to.equal(null));
    values.forEach((value, i) => {
      const got = decodeCommand(encodeCommand(kv.apply(viaCodec({ type: 'get', key: `k${i}` }))));
      expect(got, `k${i}`).to.deep.equal(value);
    });
  });

  it('delete returns true when the key existed (even holding null), then false', () => {
    kv.apply({ type: 'set', key: 'a', value: 1 });
    kv.apply({ type: 'set', key: 'n', value: null });
    expect(kv.apply({ type: 'delete', key: 'a' })).to.equal(true);
    expect(kv.apply({ type: 'delete', key: 'a' })).to.equal(false);
    expect(kv.apply({ type: 'get', key: 'a' })).to.equal(null);
    expect(kv.apply({ type: 'delete', key: 'n' })).to.equal(true);
    expect(kv.apply({ type: 'delete', key: 'never' })).to.equal(false);
    expect(kv.size).to.equal(0);
  });

  it('cas swaps when expected equals the stored value, and returns true', () => {
    kv.apply({ type: 'set', key: 'a', value: 1 });
    expect(kv.apply({ type: 'cas', key: 'a', expected: 1, value: 2 })).to.equal(true);
    expect(kv.apply({ type: 'get', key: 'a' })).to.equal(2);
  });

  it('cas leaves the value and returns false when expected differs', () => {
    kv.apply({ type: 'set', key: 'a', value: 1 });
    expect(kv.apply({ type: 'cas', key: 'a', expected: 3, value: 2 })).to.equal(false);
    expect(kv.apply({ type: 'cas', key: 'a', expected: '1', value: 2 })).to.equal(false);
    expect(kv.apply({ type: 'cas', key: 'a', expected: null, value: 2 })).to.equal(false);
    expect(kv.apply({ type: 'get', key: 'a' })).to.equal(1);
  });

  it('cas on a missing key: expected null creates it, anything else fails', () => {
    expect(kv.apply({ type: 'cas', key: 'm', expected: 0, value: 'x' })).to.equal(false);
    expect(kv.apply({ type: 'cas', key: 'm', expected: false, value: 'x' })).to.equal(false);
    expect(kv.apply({ type: 'cas', key: 'm', expected: '', value: 'x' })).to.equal(false);
    expect(kv.apply({ type: 'cas', key: 'm', expected: [], value: 'x' })).to.equal(false);
    expect(kv.size).to.equal(0);
    expect(kv.apply({ type: 'cas', key: 'm', expected: null, value: 'x' })).to.equal(true);
    expect(kv.apply({ type: 'get', key: 'm' })).to.equal('x');
    // Now it exists, so expected null no longer matches.
    expect(kv.apply({ type: 'cas', key: 'm', expected: null, value: 'y' })).to.equal(false);
    expect(kv.apply({ type: 'get', key: 'm' })).to.equal('x');
  });

  it('cas against a stored null matches expected null (null and missing are alike)', () => {
    kv.apply({ type: 'set', key: 'n', value: null });
    expect(kv.apply({ type: 'cas', key: 'n', expected: null, value: 5 })).to.equal(true);
    expect(kv.apply({ type: 'get', key: 'n' })).to.equal(5);
  });

  it('cas compares deep values structurally, after a codec trip', () => {
    const stored = {
      list: [1, 'two', { three: 3 }],
      bytes: new Uint8Array([1, 2, 3]),
      when: new Date(1_700_000_000_000),
      map: new Map<unknown, unknown>([
        ['x', 1],
        [2, [true]],
      ]),
      nothing: null,
    };
    kv.apply(viaCodec({ type: 'set', key: 'doc', value: stored }));
    const sameButReordered = {
      nothing: null,
      map: new Map<unknown, unknown>([
        [2, [true]],
        ['x', 1],
      ]),
      when: new Date(1_700_000_000_000),
      bytes: new Uint8Array([1, 2, 3]),
      list: [1, 'two', { three: 3 }],
    };
    const near: [string, unknown][] = [
      ['array element differs', { ...stored, list: [1, 'two', { three: 4 }] }],
      ['array longer', { ...stored, list: [1, 'two', { three: 3 }, 4] }],
      ['one byte differs', { ...stored, bytes: new Uint8Array([1, 2, 4]) }],
      ['bytes as a plain array', { ...stored, bytes: [1, 2, 3] }],
      ['other time', { ...stored, when: new Date(1_700_000_000_001) }],
      ['map value differs', { ...stored, map: new Map<unknown, unknown>([['x', 1], [2, [false]]]) }],
      ['map as object', { ...stored, map: { x: 1, 2: [true] } }],
      ['extra key', { ...stored, extra: 1 }],
      ['missing key', { list: stored.list, bytes: stored.bytes, when: stored.when, map: stored.map }],
      ['undefined instead of null', { ...stored, nothing: undefined }],
    ];
    for (const [label, expected] of near) {
      expect(kv.apply(viaCodec({ type: 'cas', key: 'doc', expected, value: 'wrong' })), label).to.equal(false);
    }
    expect(kv.apply(viaCodec({ type: 'cas', key: 'doc', expected: sameButReordered, value: 'swapped' }))).to.equal(
      true,
    );
    expect(kv.apply({ type: 'get', key: 'doc' })).to.equal('swapped');
  });

  it('ignores extra fields', () => {
    expect(kv.apply({ type: 'set', key: 'a', value: 1, ttl: 5, junk: { x: 1 } })).to.equal(null);
    expect(kv.apply({ type: 'get', key: 'a', value: 'ignored' })).to.equal(1);
  });
});

describe('kv: malformed commands', () => {
  const BAD: [string, unknown, RegExp][] = [
    ['null', null, /must be an object.*got null/],
    ['a string', 'set a 1', /must be an object.*got string/],
    ['a number', 7, /must be an object.*got number/],
    ['undefined', undefined, /must be an object.*got undefined/],
    ['an array', ['set', 'a', 1], /must be an object.*got an array/],
    ['a Map', new Map([['type', 'get']]), /must be an object.*got a Map/],
    ['no type', { key: 'a' }, /has no type; expected one of set, get, delete, cas/],
    ['unknown type', { type: 'frob', key: 'a' }, /has type string "frob"; expected one of/],
    ['type in wrong case', { type: 'SET', key: 'a', value: 1 }, /has type string "SET"/],
    ['non-string type', { type: 1, key: 'a' }, /has type number "1"/],
    ['set without key', { type: 'set', value: 1 }, /kv set command needs a string 'key', got no key/],
    ['get with numeric key', { type: 'get', key: 1 }, /kv get command needs a string 'key', got number "1"/],
    ['delete with null key', { type: 'delete', key: null }, /kv delete command needs a string 'key', got null/],
    ['cas with object key', { type: 'cas', key: {}, expected: null, value: 1 }, /needs a string 'key', got an object/],
    ['set without value', { type: 'set', key: 'a' }, /kv set command is missing its 'value' field/],
    ['set with undefined value', { type: 'set', key: 'a', value: undefined }, /missing its 'value' field/],
    ['cas without expected', { type: 'cas', key: 'a', value: 1 }, /kv cas command is missing its 'expected' field/],
    ['cas without value', { type: 'cas', key: 'a', expected: null }, /kv cas command is missing its 'value' field/],
  ];

  for (const [label, command, message] of BAD) {
    it(`${label}: throws InvalidCommandError and leaves the state unchanged`, () => {
      const kv = createStateMachine();
      kv.apply({ type: 'set', key: 'a', value: 'original' });
      kv.apply({ type: 'set', key: 'b', value: [1, 2] });
      let thrown: unknown;
      try {
        kv.apply(command);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).to.be.instanceOf(InvalidCommandError);
      expect(isRaftError(thrown)).to.equal(true);
      expect((thrown as InvalidCommandError).code).to.equal('INVALID_COMMAND');
      expect((thrown as Error).message).to.match(message);
      expect(kv.size).to.equal(2);
      expect(dump(kv, ['a', 'b'])).to.deep.equal(['original', [1, 2]]);
      // validateKvCommand refuses it the same way.
      expect(() => validateKvCommand(command)).to.throw(InvalidCommandError, message);
    });
  }

  it('a refused command travels to the caller as INVALID_COMMAND over the wire', () => {
    let thrown: unknown;
    try {
      createStateMachine().apply({ type: 'frob', key: 'a' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).to.be.instanceOf(InvalidCommandError);
    expect((thrown as InvalidCommandError).toWire()).to.deep.equal({
      code: 'INVALID_COMMAND',
      message: (thrown as Error).message,
      leader: null,
    });
  });
});

describe('kv: snapshot and restore', () => {
  /** Every value kind the kv's doc lists, after a codec trip (as a consensus actor holds them). */
  const values: [string, unknown][] = [
    ['null', null],
    ['false', false],
    ['true', true],
    ['int', 42],
    ['float', -1.5],
    ['bigint', 2n ** 60n],
    ['empty', ''],
    ['string', 'ключ 🔑'],
    ['array', [1, [2, [3]], 'x']],
    ['object', { a: { b: null }, c: [1] }],
    ['map', new Map<unknown, unknown>([[1, 'one'], ['two', [2]]])],
    ['date', new Date(86_400_000)],
    ['bytes', new Uint8Array([0, 1, 255])],
    ['__proto__', 'a key like any other'],
  ];

  function filled(order: readonly [string, unknown][] = values): KvStateMachine {
    const kv = createStateMachine();
    for (const [key, value] of order) kv.apply(viaCodec({ type: 'set', key, value }));
    return kv;
  }

  const keys = values.map(([key]) => key);
  const bytes = (a: Uint8Array): number[] => Array.from(a);

  it('restores every value kind into a fresh kv', () => {
    const original = filled();
    const copy = createStateMachine();
    copy.restore(original.snapshot());
    expect(copy.size).to.equal(values.length);
    for (const [key, value] of values) {
      const got = decodeCommand(encodeCommand(copy.apply({ type: 'get', key })));
      expect(got, key).to.deep.equal(value);
    }
    expect(deepEqual(dump(copy, keys), dump(original, keys))).to.equal(true);
  });

  it('an empty kv snapshots and restores to empty', () => {
    const copy = filled();
    copy.restore(createStateMachine().snapshot());
    expect(copy.size).to.equal(0);
    expect(copy.apply({ type: 'get', key: 'int' })).to.equal(null);
  });

  it('restore replaces the existing state', () => {
    const source = createStateMachine();
    source.apply({ type: 'set', key: 'kept', value: 'from the snapshot' });
    const kv = createStateMachine();
    kv.apply({ type: 'set', key: 'kept', value: 'old' });
    kv.apply({ type: 'set', key: 'gone', value: 1 });
    kv.restore(source.snapshot());
    expect(kv.size).to.equal(1);
    expect(kv.apply({ type: 'get', key: 'kept' })).to.equal('from the snapshot');
    expect(kv.apply({ type: 'delete', key: 'gone' })).to.equal(false);
    // And goes on applying commands from there.
    kv.apply({ type: 'set', key: 'new', value: 2 });
    expect(kv.size).to.equal(2);
  });

  it('snapshots of equal states are equal bytes, whatever order the keys were written in', () => {
    const forward = filled();
    const backward = filled([...values].reverse());
    expect(bytes(backward.snapshot())).to.deep.equal(bytes(forward.snapshot()));
    // Same state reached through deletes and overwrites.
    const detour = filled();
    detour.apply({ type: 'set', key: 'int', value: 0 });
    detour.apply({ type: 'set', key: 'extra', value: 1 });
    detour.apply({ type: 'delete', key: 'extra' });
    detour.apply({ type: 'set', key: 'int', value: 42 });
    expect(bytes(detour.snapshot())).to.deep.equal(bytes(forward.snapshot()));
    expect(bytes(forward.snapshot())).to.deep.equal(bytes(forward.snapshot()), 'taking one changes nothing');
  });

  it('a restored kv snapshots to the same bytes as the original', () => {
    const original = filled();
    const snapshot = original.snapshot();
    const copy = createStateMachine();
    copy.restore(snapshot);
    expect(bytes(copy.snapshot())).to.deep.equal(bytes(snapshot));
    // And the two stay alike under the same commands.
    for (const kv of [original, copy]) {
      kv.apply({ type: 'set', key: 'after', value: [1, 2] });
      kv.apply({ type: 'delete', key: 'bytes' });
    }
    expect(bytes(copy.snapshot())).to.deep.equal(bytes(original.snapshot()));
  });

  const garbage: [string, Uint8Array][] = [
    ['not msgpack', new Uint8Array([0xc1, 0xff, 0x00])],
    ['empty', new Uint8Array(0)],
    ['not an array', encodeCommand({ a: 1 })],
    ['a pair without a string key', encodeCommand([[1, 'x']])],
    ['not a pair', encodeCommand([['a', 1, 2]])],
    ['a key twice', encodeCommand([['a', 1], ['a', 2]])],
    ['truncated', filled().snapshot().subarray(0, 20)],
  ];
  for (const [label, data] of garbage) {
    it(`restore of garbage (${label}) throws a clear error and keeps the old state`, () => {
      const kv = filled();
      const before = bytes(kv.snapshot());
      expect(() => kv.restore(data)).to.throw(Error, /kv restore: not a kv snapshot/);
      expect(bytes(kv.snapshot())).to.deep.equal(before);
      expect(kv.size).to.equal(values.length);
    });
  }
});

describe('kv: validateKvCommand', () => {
  it('returns each command with only its known fields', () => {
    const cases: [unknown, KvCommand][] = [
      [{ type: 'set', key: 'a', value: 0, extra: 1 }, { type: 'set', key: 'a', value: 0 }],
      [{ type: 'get', key: 'a', value: 9 }, { type: 'get', key: 'a' }],
      [{ type: 'delete', key: '', junk: [] }, { type: 'delete', key: '' }],
      [
        { type: 'cas', key: 'a', expected: null, value: false, x: 1 },
        { type: 'cas', key: 'a', expected: null, value: false },
      ],
    ];
    for (const [input, expected] of cases) expect(validateKvCommand(input)).to.deep.equal(expected);
  });

  it('accepts null and false as values (only undefined means missing)', () => {
    expect(validateKvCommand({ type: 'set', key: 'a', value: null })).to.deep.equal({ type: 'set', key: 'a', value: null });
    expect(validateKvCommand({ type: 'cas', key: 'a', expected: false, value: 0 })).to.deep.equal({
      type: 'cas',
      key: 'a',
      expected: false,
      value: 0,
    });
  });
});

describe('kv: deepEqual', () => {
  it('equal pairs', () => {
    const pairs: [unknown, unknown][] = [
      [null, null],
      [1, 1],
      [0, -0],
      [Number.NaN, Number.NaN],
      [5n, 5n],
      ['s', 's'],
      [[], []],
      [{}, {}],
      [{ a: 1, b: 2 }, { b: 2, a: 1 }],
      [new Uint8Array([1, 2]), Buffer.from([1, 2])],
      [new Date(5), new Date(5)],
      [new Date(Number.NaN), new Date(Number.NaN)],
      [new Map([[{ k: 1 }, 'v']]), new Map([[{ k: 1 }, 'v']])],
      [new Set([1, { a: 1 }]), new Set([{ a: 1 }, 1])],
      [new Float64Array([Number.NaN]), new Float64Array([Number.NaN])],
    ];
    for (const [a, b] of pairs) {
      expect(deepEqual(a, b), `${String(a)} = ${String(b)}`).to.equal(true);
      expect(deepEqual(b, a), `${String(b)} = ${String(a)}`).to.equal(true);
    }
  });

  it('unequal pairs, including different kinds with the same contents', () => {
    const pairs: [unknown, unknown][] = [
      [null, undefined],
      [null, 0],
      [1, 1n],
      [1, '1'],
      [[1], { 0: 1 }],
      [[1, 2], new Uint8Array([1, 2])],
      [new Uint8Array([1, 2]), new Int8Array([1, 2])],
      [new Uint8Array([1, 2]), new Uint8Array([1, 2, 0])],
      [{ a: undefined }, {}],
      [{ a: 1 }, { b: 1 }],
      [new Map([['a', 1]]), { a: 1 }],
      [new Map([['a', 1]]), new Map([['a', 2]])],
      [new Map([[{ k: 1 }, 'v']]), new Map([[{ k: 2 }, 'v']])],
      [new Date(0), 0],
      [new Date(0), new Date(1)],
      [new Set([1]), [1]],
    ];
    for (const [a, b] of pairs) {
      expect(deepEqual(a, b), `${String(a)} vs ${String(b)}`).to.equal(false);
      expect(deepEqual(b, a), `${String(b)} vs ${String(a)}`).to.equal(false);
    }
  });
});

describe('state machines: loadStateMachine', () => {
  it("'kv' gives a fresh built-in kv each time", async () => {
    const a = await loadStateMachine('kv');
    const b = await loadStateMachine('kv');
    expect(a).to.be.instanceOf(KvStateMachine);
    expect(a).to.not.equal(b);
    expect(a.apply({ type: 'set', key: 'k', value: 1 })).to.equal(null);
    expect(a.apply({ type: 'get', key: 'k' })).to.equal(1);
    expect(b.apply({ type: 'get', key: 'k' })).to.equal(null);
  });

  it('loads a module by absolute path through its createStateMachine export', async () => {
    const sm = await loadStateMachine({ module: fixture('counter-sm') });
    expect(sm.apply({ add: 2 })).to.equal(2);
    expect(sm.apply({ add: 5 })).to.equal(7);
    expect(() => sm.apply({ add: 'x' })).to.throw(TypeError, /add: number/);
    const fresh = await loadStateMachine({ module: fixture('counter-sm') });
    expect(fresh.apply({ add: 1 }), 'each load calls the factory again').to.equal(1);
  });

  it('loads a module by file: URL as given', async () => {
    const url = new URL('./fixtures/counter-sm.js', import.meta.url).href;
    const sm = await loadStateMachine({ module: url });
    expect(sm.apply({ add: 3 })).to.equal(3);
  });

  it('uses an async default-export factory', async () => {
    const sm = await loadStateMachine({ module: fixture('default-factory-sm') });
    expect(sm.apply('a')).to.equal(1);
    expect(sm.apply('b')).to.equal(2);
  });

  it('throws a TypeError naming the module when it exports no factory', async () => {
    const path = fixture('no-factory-sm');
    const err = await loadStateMachine({ module: path }).then(
      () => expect.fail('should have thrown'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TypeError);
    expect((err as Error).message).to.contain(path);
    expect((err as Error).message).to.match(/neither a createStateMachine function nor a default/);
    expect((err as Error).message).to.contain('exports: apply, createStateMachine');
  });

  it('throws a TypeError when the factory result has no apply function', async () => {
    const err = await loadStateMachine({ module: fixture('no-apply-sm') }).then(
      () => expect.fail('should have thrown'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(TypeError);
    expect((err as Error).message).to.match(/returned object without an apply\(command\) function/);
  });

  it('rejects a spec that is neither kv nor { module: string }', async () => {
    for (const bad of ['KV', 'redis', {}, { module: 1 }, { module: '' }, null]) {
      const err = await loadStateMachine(bad as never).then(
        () => expect.fail(`${JSON.stringify(bad)} should have thrown`),
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(bad)).to.be.instanceOf(TypeError);
      expect((err as Error).message).to.match(/stateMachine must be 'kv' or \{ module: string \}/);
    }
  });

  it('lets a missing module fail with the import error', async () => {
    const err = await loadStateMachine({ module: fixture('does-not-exist') }).then(
      () => expect.fail('should have thrown'),
      (e: unknown) => e,
    );
    expect((err as { code?: string }).code).to.equal('ERR_MODULE_NOT_FOUND');
  });
});
