/**
 * src/errors.ts: every error class, its stable code, the marker guard, and the trip across a
 * thread (toWire → msgpack → fromWire).
 */
import { expect } from 'chai';
import {
  ActorRestartedError,
  CatchUpTimeoutError,
  ConfigInProgressError,
  TransferFailedError,
  ConfigError,
  DataDirLockedError,
  fromWire,
  InsecurePeersError,
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
  type RaftErrorCode,
} from '../src/errors.js';
import { codec, type WireError } from '../src/messages.js';

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
