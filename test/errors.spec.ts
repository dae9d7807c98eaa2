/**
 * src/errors.ts: every error class, its stable code, the marker guard, the trip across a
 * thread (toWire → msgpack → fromWire), and the outcome every error reports: per class, where
 * the API knows better (a request never sent versus one in flight), and on real peers under
 * client sessions (an op reported 'unknown' applied at most once, one reported 'not-applied'
 * never).
 */
import { expect } from 'chai';
import { MessageChannel } from 'node:worker_threads';
import { nemesis, op, query, read, status, stopNode } from '../src/api/index.js';
import { NodeHandle } from '../src/api/node-handle.js';
import { ClientSession } from '../src/client-session.js';
import type { ControlProxy } from '../src/control.js';
import { COUNTING_KV_MODULE } from '../src/testing/counting-kv.js';
import {
  ActorRestartedError,
  CatchUpTimeoutError,
  ConfigInProgressError,
  TransferFailedError,
  ConfigError,
  DataDirLockedError,
  fromWire,
  InsecurePeersError,
  NoSpaceError,
  InvalidCommandError,
  isRaftError,
  LeadershipLostError,
  NodeExistsError,
  NodeStoppedError,
  NotLeaderError,
  RaftError,
  SessionExpiredError,
  StaleRequestError,
  StateMachineError,
  StorageError,
  TimeoutError,
  toWire,
  UnknownNodeError,
  OUTCOME_OF,
  RESULT_NOT_ENCODABLE,
  withOutcome,
  type RaftErrorCode,
} from '../src/errors.js';
import { codec, decodeAll } from '../src/codec.js';
import { isClientRequest, type WireError } from '../src/messages.js';
import { realCluster, sleep, waitFor, waitForConverged, waitForLeader } from './helpers/cluster.js';

interface Case {
  cls: abstract new (...args: never[]) => RaftError;
  make: () => RaftError;
}

// A Record over RaftErrorCode: adding a code without a case here fails to compile.
const CASES: Record<RaftErrorCode, Case> = {
  NOT_LEADER: { cls: NotLeaderError, make: () => new NotLeaderError('n2') },
  TIMEOUT: { cls: TimeoutError, make: () => new TimeoutError(250) },
  UNKNOWN_NODE: { cls: UnknownNodeError, make: () => new UnknownNodeError('n9') },
  NODE_STOPPED: { cls: NodeStoppedError, make: () => new NodeStoppedError('n1') },
  NODE_EXISTS: { cls: NodeExistsError, make: () => new NodeExistsError('n1') },
  CONFIG_INVALID: { cls: ConfigError, make: () => new ConfigError('duplicate peer n1') },
  CONFIG_IN_PROGRESS: { cls: ConfigInProgressError, make: () => new ConfigInProgressError() },
  CATCH_UP_TIMEOUT: { cls: CatchUpTimeoutError, make: () => new CatchUpTimeoutError() },
  TRANSFER_FAILED: { cls: TransferFailedError, make: () => new TransferFailedError('n3 is not a voter') },
  LEADERSHIP_LOST: { cls: LeadershipLostError, make: () => new LeadershipLostError() },
  ACTOR_RESTARTED: { cls: ActorRestartedError, make: () => new ActorRestartedError() },
  STATE_MACHINE_ERROR: {
    cls: StateMachineError,
    make: () => new StateMachineError('apply threw: boom'),
  },
  INVALID_COMMAND: {
    cls: InvalidCommandError,
    make: () => new InvalidCommandError("kv command has type 'frob'"),
  },
  STORAGE_ERROR: { cls: StorageError, make: () => new StorageError('MDB_MAP_FULL') },
  SESSION_EXPIRED: { cls: SessionExpiredError, make: () => new SessionExpiredError() },
  STALE_REQUEST: { cls: StaleRequestError, make: () => new StaleRequestError() },
  DATA_DIR_LOCKED: { cls: DataDirLockedError, make: () => new DataDirLockedError('/var/lib/raft/n1', 4242) },
  INSECURE_PEERS: { cls: InsecurePeersError, make: () => new InsecurePeersError('add a cluster secret') },
  NO_SPACE: { cls: NoSpaceError, make: () => new NoSpaceError('disk full at /var/lib/raft/n1: 0 bytes free') },
};
const ALL = Object.entries(CASES) as [RaftErrorCode, Case][];

/** The trip an error makes between threads: WireError → codec bytes → WireError → class. */
const acrossThread = (e: RaftError): RaftError => fromWire(codec.decode(codec.encode(e.toWire())) as WireError);

describe('errors: classes', () => {
  for (const [code, { cls, make }] of ALL) {
    describe(cls.name, () => {
      it(`is an Error, a RaftError and a ${cls.name}`, () => {
        const e = make();
        expect(e).to.be.instanceOf(Error);
        expect(e).to.be.instanceOf(RaftError);
        expect(e).to.be.instanceOf(cls);
      });

      it(`has name '${cls.name}' and code '${code}'`, () => {
        const e = make();
        expect(e.name).to.equal(cls.name);
        expect(e.code).to.equal(code);
        expect(String(e)).to.equal(`${cls.name}: ${e.message}`);
        expect(e.stack).to.match(new RegExp(`^${cls.name}: `));
        expect(e.message).to.be.a('string').that.is.not.empty;
      });

      it('is recognised by isRaftError', () => {
        expect(isRaftError(make())).to.equal(true);
      });
    });
  }

  it('no two classes share a code, and no class is another one', () => {
    const codes = ALL.map(([, c]) => c.make().code);
    expect(new Set(codes).size).to.equal(ALL.length);
    for (const [, a] of ALL) {
      for (const [, b] of ALL) if (a !== b) expect(a.make()).to.not.be.instanceOf(b.cls);
    }
  });

  it('carries its data: leader, ms, nodeId', () => {
    expect(new NotLeaderError('n3').leader).to.equal('n3');
    expect(new NotLeaderError(null).leader).to.equal(null);
    expect(new TimeoutError(1500).ms).to.equal(1500);
    expect(new UnknownNodeError('x').nodeId).to.equal('x');
    expect(new NodeStoppedError('y').nodeId).to.equal('y');
    expect(new NodeExistsError('z').nodeId).to.equal('z');
  });

  it('default messages name what they are about', () => {
    expect(new NotLeaderError('n3').message).to.contain('n3');
    expect(new NotLeaderError(null).message).to.contain('no leader is known');
    expect(new TimeoutError(1500).message).to.contain('1500 ms');
    expect(new UnknownNodeError('x').message).to.contain("'x'");
    expect(new NodeStoppedError('y').message).to.contain("'y'");
    expect(new NodeExistsError('z').message).to.contain("'z'");
    expect(new LeadershipLostError().message).to.contain('outcome is unknown');
    expect(new ActorRestartedError().message).to.contain('outcome is unknown');
  });

  it('explicit messages override the defaults', () => {
    expect(new NotLeaderError('n1', 'custom').message).to.equal('custom');
    expect(new TimeoutError(5, 'slow').message).to.equal('slow');
    expect(new NodeStoppedError('n1', 'gone').message).to.equal('gone');
  });
});

describe('errors: isRaftError', () => {
  it('is false for plain errors and for values without the marker', () => {
    const notRaft: unknown[] = [
      new Error('x'),
      new TypeError('x'),
      new RangeError('x'),
      { code: 'NOT_LEADER', message: 'x', leader: null },
      { isRaftError: 'true' },
      { isRaftError: 1 },
      {},
      null,
      undefined,
      'NOT_LEADER',
      42,
    ];
    for (const v of notRaft) expect(isRaftError(v), String(v)).to.equal(false);
  });

  it('is marker-based, so it also recognises a RaftError from another realm (any object with the marker)', () => {
    expect(isRaftError({ isRaftError: true, code: 'TIMEOUT', message: 'x' })).to.equal(true);
  });
});

describe('errors: toWire / fromWire', () => {
  for (const [code, { cls, make }] of ALL) {
    it(`${cls.name} keeps its class, code and message across a thread`, () => {
      const original = make();
      const wire = original.toWire();
      expect(wire).to.deep.equal({
        code,
        message: original.message,
        leader: original instanceof NotLeaderError ? original.leader : null,
      });
      const back = acrossThread(original);
      expect(back).to.be.instanceOf(cls);
      expect(back.constructor).to.equal(cls);
      expect(back.code).to.equal(code);
      expect(back.message).to.equal(original.message);
      expect(isRaftError(back)).to.equal(true);
    });
  }

  it('NotLeaderError keeps its leader, named or null', () => {
    for (const leader of ['n2', null]) {
      const back = acrossThread(new NotLeaderError(leader));
      expect(back).to.be.instanceOf(NotLeaderError);
      expect((back as NotLeaderError).leader).to.equal(leader);
      expect(back.message).to.equal(new NotLeaderError(leader).message);
    }
  });

  it('TimeoutError keeps its message (its ms is not on the wire and comes back as 0)', () => {
    const back = acrossThread(new TimeoutError(250));
    expect(back.message).to.equal('no answer within 250 ms');
    expect((back as TimeoutError).ms).to.equal(0);
  });

  it('only NotLeaderError puts a leader on the wire', () => {
    for (const [code, { make }] of ALL) {
      if (code !== 'NOT_LEADER') expect(make().toWire().leader, code).to.equal(null);
    }
  });

  it('an unknown code comes back as a StateMachineError with the message kept', () => {
    const back = fromWire({ code: 'SOMETHING_NEW', message: 'from a newer peer', leader: null });
    expect(back).to.be.instanceOf(StateMachineError);
    expect(back.code).to.equal('STATE_MACHINE_ERROR');
    expect(back.message).to.equal('from a newer peer');
  });

  it('the toWire helper wraps anything thrown', () => {
    expect(toWire(new NotLeaderError('n4'))).to.deep.equal({
      code: 'NOT_LEADER',
      message: 'not the leader; try n4',
      leader: 'n4',
    });
    expect(toWire(new Error('apply blew up'))).to.deep.equal({
      code: 'STATE_MACHINE_ERROR',
      message: 'apply blew up',
      leader: null,
    });
    expect(toWire(new TypeError('bad'), 'STORAGE_ERROR')).to.deep.equal({
      code: 'STORAGE_ERROR',
      message: 'bad',
      leader: null,
    });
    expect(toWire('a thrown string')).to.deep.equal({
      code: 'STATE_MACHINE_ERROR',
      message: 'a thrown string',
      leader: null,
    });
    // A RaftError keeps its own code even when a fallback is given.
    expect(toWire(new StorageError('disk'), 'STATE_MACHINE_ERROR').code).to.equal('STORAGE_ERROR');
  });
});

describe('errors: outcome', () => {
  for (const [code, { cls, make }] of ALL) {
    it(`${cls.name} says '${OUTCOME_OF[code]}' unless told otherwise, and keeps it across a thread`, () => {
      const e = make();
      expect(e.outcome).to.equal(OUTCOME_OF[code]);
      const back = acrossThread(e);
      expect(back.outcome).to.equal(code === 'STATE_MACHINE_ERROR' ? 'not-applied' : OUTCOME_OF[code]);
    });
  }

  it('refusals say not-applied; errors of requests that may have been applied say unknown', () => {
    const notApplied: RaftErrorCode[] = ['NOT_LEADER', 'UNKNOWN_NODE', 'NODE_EXISTS', 'CONFIG_INVALID', 'CONFIG_IN_PROGRESS', 'CATCH_UP_TIMEOUT', 'INVALID_COMMAND'];
    const unknown: RaftErrorCode[] = ['LEADERSHIP_LOST', 'STORAGE_ERROR', 'STALE_REQUEST'];
    for (const code of notApplied) expect(CASES[code].make().outcome, code).to.equal('not-applied');
    for (const code of unknown) expect(CASES[code].make().outcome, code).to.equal('unknown');
  });

  it('the classes whose outcome depends on where they are raised take it as an argument', () => {
    expect(new TimeoutError(5).outcome).to.equal('unknown');
    expect(new TimeoutError(5, 'never sent', 'not-applied').outcome).to.equal('not-applied');
    expect(new ActorRestartedError().outcome).to.equal('unknown');
    expect(new ActorRestartedError('queued', 'not-applied').outcome).to.equal('not-applied');
    expect(new TransferFailedError('x').outcome).to.equal('unknown');
    expect(new TransferFailedError('unknown peer', 'not-applied').outcome).to.equal('not-applied');
    expect(new SessionExpiredError().outcome).to.equal('unknown');
    expect(new SessionExpiredError('never in doubt', 'not-applied').outcome).to.equal('not-applied');
    expect(new StateMachineError('apply threw').outcome).to.equal('not-applied');
  });

  it('NodeStoppedError tells a request never sent from one in flight', () => {
    const before = new NodeStoppedError('n1');
    expect([before.outcome, before.inFlight]).to.deep.equal(['not-applied', false]);
    const during = new NodeStoppedError('n1', 'killed while in flight', 'unknown');
    expect([during.outcome, during.inFlight]).to.deep.equal(['unknown', true]);
  });

  it('a result that could not be saved was applied: its StateMachineError says unknown; so does an unknown code', () => {
    const unsaved = fromWire({ code: 'STATE_MACHINE_ERROR', message: `${RESULT_NOT_ENCODABLE}: a function`, leader: null });
    expect(unsaved).to.be.instanceOf(StateMachineError);
    expect(unsaved.outcome).to.equal('unknown');
    expect(fromWire({ code: 'STATE_MACHINE_ERROR', message: 'apply threw: boom', leader: null }).outcome).to.equal('not-applied');
    expect(fromWire({ code: 'SOMETHING_NEW', message: 'from a newer peer', leader: null }).outcome).to.equal('unknown');
  });

  it('withOutcome copies an error with another outcome, leaving the original as it was', () => {
    const original = new NodeStoppedError('n1', 'gone');
    const copy = withOutcome(original, 'unknown');
    expect(copy).to.be.instanceOf(NodeStoppedError);
    expect([copy.outcome, copy.message, copy.nodeId, copy.code, copy.stack]).to.deep.equal(['unknown', 'gone', 'n1', 'NODE_STOPPED', original.stack]);
    expect(copy.inFlight).to.equal(true);
    expect(original.outcome).to.equal('not-applied');
    expect(withOutcome(original, 'not-applied')).to.equal(original);
  });
});

/**
 * One node handle without a peer behind it: its client port is one end of a MessageChannel
 * (`actorSide` is what the actor would read), so whether a request was posted is up to the test.
 */
function bareHandle(): { handle: NodeHandle; up: () => MessagePortLike; close: () => void } {
  const handle = new NodeHandle('h1', new ClientSession(60_000), () => undefined);
  handle.state = 'running';
  const channels: MessageChannel[] = [];
  return {
    handle,
    up: () => {
      const channel = new MessageChannel();
      channels.push(channel);
      handle.hooks().consensusUp(channel.port1, {} as ControlProxy);
      return channel.port2;
    },
    close: () => {
      for (const c of channels) {
        c.port1.close();
        c.port2.close();
      }
    },
  };
}
type MessagePortLike = MessageChannel['port2'];

/** Resolves with the next request batch the actor side receives. */
function nextPosted(actorSide: MessagePortLike): Promise<unknown> {
  return new Promise((resolve) => actorSide.once('message', (bytes: unknown) => resolve(decodeAll(bytes, isClientRequest).messages)));
}

const anOp = { kind: 'op' as const, data: codec.encode({ type: 'get', key: 'k' }) };

describe('errors: outcome in the node handle (sent or not)', () => {
  it('a request never posted (no actor up) times out as not-applied', async () => {
    const { handle, close } = bareHandle();
    try {
      const err = await handle.submit(anOp, 30).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(TimeoutError);
      expect((err as TimeoutError).outcome).to.equal('not-applied');
    } finally {
      close();
    }
  });

  it('a request posted to the actor and not answered times out as unknown', async () => {
    const { handle, up, close } = bareHandle();
    try {
      const actorSide = up();
      const posted = nextPosted(actorSide);
      const answer = handle.submit(anOp, 50).catch((e: unknown) => e);
      await posted;
      const err = await answer;
      expect(err).to.be.instanceOf(TimeoutError);
      expect((err as TimeoutError).outcome).to.equal('unknown');
    } finally {
      close();
    }
  });

  it('the actor going down: ActorRestartedError unknown for requests it held, not-applied for those queued here', async () => {
    const { handle, up, close } = bareHandle();
    try {
      const actorSide = up();
      const posted = nextPosted(actorSide);
      const held = handle.submit(anOp, 5_000).catch((e: unknown) => e);
      await posted;
      handle.hooks().consensusDown(new Error('crashed'));
      const heldErr = (await held) as ActorRestartedError;
      expect(heldErr).to.be.instanceOf(ActorRestartedError);
      expect(heldErr.outcome).to.equal('unknown');
      // Queued while no actor is up, then the next one crashes before taking it.
      const queued = handle.submit(anOp, 5_000).catch((e: unknown) => e);
      handle.hooks().consensusDown(new Error('crashed again'));
      const queuedErr = (await queued) as ActorRestartedError;
      expect(queuedErr).to.be.instanceOf(ActorRestartedError);
      expect(queuedErr.outcome).to.equal('not-applied');
    } finally {
      close();
    }
  });

  it('the peer stopping: NodeStoppedError in flight (unknown) versus queued or later (not-applied)', async () => {
    const { handle, up, close } = bareHandle();
    try {
      const actorSide = up();
      const posted = nextPosted(actorSide);
      const held = handle.submit(anOp, 5_000).catch((e: unknown) => e);
      await posted;
      // Queued in the same turn as the stop: never posted.
      const queued = handle.submit(anOp, 5_000).catch((e: unknown) => e);
      await handle.retire('stopped while the op was in flight');
      const [heldErr, queuedErr] = (await Promise.all([held, queued])) as NodeStoppedError[];
      expect([heldErr!.outcome, heldErr!.inFlight, heldErr!.message]).to.deep.equal(['unknown', true, 'stopped while the op was in flight']);
      expect([queuedErr!.outcome, queuedErr!.inFlight]).to.deep.equal(['not-applied', false]);
      const later = (await handle.submit(anOp, 5_000).catch((e: unknown) => e)) as NodeStoppedError;
      expect([later.outcome, later.inFlight]).to.deep.equal(['not-applied', false]);
    } finally {
      close();
    }
  });
});

/** The counting kv's applications of `opId` on each of `ids` (each peer's own state). */
async function applications(ids: string[], opId: string): Promise<number[]> {
  return Promise.all(
    ids.map(async (id) => {
      const table = new Map((await query(id, { type: 'applications' })) as [string, number][]);
      return table.get(opId) ?? 0;
    }),
  );
}

describe('errors: outcome of ops on real peers, under client sessions', function () {
  this.timeout(60_000);
  const fixture = realCluster();
  const ids = ['a', 'b', 'c'];
  const counting = { stateMachine: { module: COUNTING_KV_MODULE } };

  /** A cluster of the counting kv; `warm` opens the client session of each node handle (an op each). */
  async function cluster(): Promise<string> {
    const { leader } = await fixture.startCluster(ids, counting);
    for (const id of ids) await op(id, { type: 'set', key: 'warm', value: id });
    return leader;
  }

  it('an op on a peer that is stopped: NodeStoppedError, not-applied, never applied', async () => {
    await cluster();
    await stopNode('c');
    const err = (await op('c', { type: 'set', key: 'k', value: 1, opId: 'stopped' }).catch((e: unknown) => e)) as NodeStoppedError;
    expect(err).to.be.instanceOf(NodeStoppedError);
    expect([err.outcome, err.inFlight]).to.deep.equal(['not-applied', false]);
    await waitForConverged(['a', 'b']);
    expect(await applications(['a', 'b'], 'stopped')).to.deep.equal([0, 0]);
  });

  it('a client beside a follower cut off from the leader: NotLeaderError, not-applied, never applied', async () => {
    const leader = await cluster();
    const follower = ids.find((id) => id !== leader)!;
    await nemesis.partition([[follower], ids.filter((id) => id !== follower)]);
    const err = (await op(follower, { type: 'set', key: 'k', value: 1, opId: 'cut-off' }, { via: follower, timeoutMs: 800 }).catch(
      (e: unknown) => e,
    )) as NotLeaderError;
    expect(err).to.be.instanceOf(NotLeaderError);
    expect(err.outcome).to.equal('not-applied');
    // Without `via` the same op goes across the partition to the leader.
    expect(await op(follower, { type: 'set', key: 'k', value: 2, opId: 'across' }, { timeoutMs: 5_000 })).to.equal(null);
    await nemesis.heal();
    await waitForConverged(ids);
    expect(await applications(ids, 'cut-off')).to.deep.equal([0, 0, 0]);
    expect(await applications(ids, 'across')).to.deep.equal([1, 1, 1]);
  });

  it('a client beside a leader cut off from the majority: TimeoutError, unknown, applied at most once', async () => {
    const leader = await cluster();
    const rest = ids.filter((id) => id !== leader);
    await nemesis.partition([[leader], rest]);
    const err = (await op(leader, { type: 'set', key: 'k', value: 1, opId: 'isolated' }, { via: leader, timeoutMs: 1_000, attemptTimeoutMs: 200 }).catch(
      (e: unknown) => e,
    )) as TimeoutError;
    expect(err).to.be.instanceOf(TimeoutError);
    expect(err.outcome).to.equal('unknown');
    await waitForLeader(rest);
    await nemesis.heal();
    await waitForConverged(ids);
    for (const n of await applications(ids, 'isolated')) expect(n).to.be.at.most(1);
  });

  it('an op in flight when its peer is killed, its client beside it: NodeStoppedError, unknown (in flight), applied at most once', async () => {
    const leader = await cluster();
    const rest = ids.filter((id) => id !== leader);
    await nemesis.partition([[leader], rest]);
    const before = (await status(leader)).lastIndex;
    const answer = op(leader, { type: 'set', key: 'k', value: 1, opId: 'killed' }, { via: leader, timeoutMs: 20_000, attemptTimeoutMs: 20_000 }).catch(
      (e: unknown) => e,
    );
    await waitFor('the op in the leader\'s log', async () => ((await status(leader)).lastIndex > before ? true : undefined));
    await nemesis.kill(leader);
    const err = (await answer) as NodeStoppedError;
    expect(err).to.be.instanceOf(NodeStoppedError);
    expect([err.outcome, err.inFlight]).to.deep.equal(['unknown', true]);
    await nemesis.heal();
    await fixture.startPeers([leader], counting);
    await waitForConverged(ids);
    for (const n of await applications(ids, 'killed')) expect(n).to.be.at.most(1);
  });

  it('op() sends tries again across actor crashes: it never rejects with ActorRestartedError or LeadershipLostError', async () => {
    await cluster();
    let running = true;
    const errors: unknown[] = [];
    let acknowledged = 0;
    const clients = ids.map(async (id, c) => {
      for (let n = 0; running; n++) {
        try {
          await op(id, { type: 'set', key: `k${c}`, value: n, opId: `crash-${c}-${n}` }, { timeoutMs: 10_000, attemptTimeoutMs: 300 });
          acknowledged++;
        } catch (err) {
          errors.push(err);
        }
      }
    });
    // Four crashes, so no peer exceeds its restart intensity (5 in 10 s).
    for (let i = 0; i < 4; i++) {
      await sleep(150);
      const { leader } = await waitForLeader(ids);
      await nemesis.crash(i % 2 === 0 ? leader : ids[i % 3]!, 'consensus');
    }
    running = false;
    await Promise.all(clients);
    expect(acknowledged).to.be.greaterThan(0);
    for (const err of errors) {
      expect(err).to.not.be.instanceOf(ActorRestartedError);
      expect(err).to.not.be.instanceOf(LeadershipLostError);
      expect(isRaftError(err), String(err)).to.equal(true);
    }
    await waitForConverged(ids);
    const table = new Map((await query('a', { type: 'applications' })) as [string, number][]);
    for (const [opId, n] of table) expect(n, opId).to.be.at.most(1);
  });

  it('read() through a peer cut off with its client: an error whose outcome is set, the state unchanged', async () => {
    const leader = await cluster();
    const follower = ids.find((id) => id !== leader)!;
    await nemesis.partition([[follower], ids.filter((id) => id !== follower)]);
    const err = (await read(follower, { type: 'get', key: 'warm' }, { via: follower, timeoutMs: 600 }).catch((e: unknown) => e)) as RaftError;
    expect(isRaftError(err), String(err)).to.equal(true);
    expect(['not-applied', 'unknown']).to.include(err.outcome);
    await nemesis.heal();
    expect(await read(follower, { type: 'get', key: 'warm' }, { via: follower })).to.equal(ids[ids.length - 1]);
  });
});
