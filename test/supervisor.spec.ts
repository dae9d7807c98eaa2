/**
 * The generic supervisor with in-memory children: strategies, restart intensity,
 * start failures. (Worker children are exercised in cluster.spec.)
 */
import { expect } from 'chai';
import { Supervisor, type Child, type ChildSpec, type Strategy } from '../supervisors/supervisor.js';

/** A child that records its life in `log` and can be made to die. */
class FakeChild implements Child {
  readonly exited: Promise<Error>;
  die!: (reason: Error) => void;
  constructor(
    readonly name: string,
    private readonly log: string[],
  ) {
    this.exited = new Promise((r) => (this.die = r));
  }
  async stop(): Promise<void> {
    this.log.push(`stop ${this.name}`);
  }
  async kill(): Promise<void> {
    this.log.push(`kill ${this.name}`);
  }
}

function tree(strategy: Strategy, names: string[], opts: { maxRestarts?: number; failStart?: string } = {}) {
  const log: string[] = [];
  const current = new Map<string, FakeChild>();
  const specs: ChildSpec[] = names.map((name) => ({
    id: name,
    async start() {
      if (opts.failStart === name) throw new Error(`${name} cannot start`);
      log.push(`start ${name}`);
      const child = new FakeChild(name, log);
      current.set(name, child);
      return child;
    },
  }));
  const supervisor = new Supervisor(specs, {
    strategy,
    maxRestarts: opts.maxRestarts ?? 10,
    periodMs: 60_000,
    backoffMs: 1,
    maxBackoffMs: 4,
  });
  const restarted = () => new Promise<void>((r) => supervisor.once('restart', () => r()));
  return { supervisor, log, current, restarted };
}

describe('supervisor', () => {
  it('starts children in order and stops them in reverse', async () => {
    const { supervisor, log } = tree('rest_for_one', ['log', 'consensus']);
    await supervisor.start();
    await supervisor.stop();
    expect(log).to.deep.equal(['start log', 'start consensus', 'stop consensus', 'stop log']);
  });

  it('one_for_one restarts only the child that died', async () => {
    const t = tree('one_for_one', ['a', 'b', 'c']);
    await t.supervisor.start();
    t.log.length = 0;
    const done = t.restarted();
    t.current.get('b')!.die(new Error('boom'));
    await done;
    expect(t.log).to.deep.equal(['start b']);
    expect(t.supervisor.restarts.get('b')).to.equal(1);
    await t.supervisor.stop();
  });

  it('one_for_all restarts every child, killing the rest in reverse order first', async () => {
    const t = tree('one_for_all', ['a', 'b', 'c']);
    await t.supervisor.start();
    t.log.length = 0;
    const done = t.restarted();
    t.current.get('b')!.die(new Error('boom'));
    await done;
    expect(t.log).to.deep.equal(['kill c', 'kill a', 'start a', 'start b', 'start c']);
    await t.supervisor.stop();
  });

  it('rest_for_one restarts the child that died and those started after it', async () => {
    const t = tree('rest_for_one', ['log', 'consensus', 'extra']);
    await t.supervisor.start();
    t.log.length = 0;
    let done = t.restarted();
    t.current.get('consensus')!.die(new Error('boom'));
    await done;
    expect(t.log).to.deep.equal(['kill extra', 'start consensus', 'start extra']);
    t.log.length = 0;
    done = t.restarted();
    t.current.get('log')!.die(new Error('disk'));
    await done;
    expect(t.log).to.deep.equal(['kill extra', 'kill consensus', 'start log', 'start consensus', 'start extra']);
    expect(Object.fromEntries(t.supervisor.restarts)).to.deep.equal({ log: 1, consensus: 2, extra: 2 });
    await t.supervisor.stop();
  });

  it('gives up after more than maxRestarts within the period, kills every child and reports why', async () => {
    const t = tree('rest_for_one', ['log', 'consensus'], { maxRestarts: 2 });
    await t.supervisor.start();
    const failed = new Promise<Error>((r) => t.supervisor.once('failed', r));
    for (let i = 0; i < 2; i++) {
      const done = t.restarted();
      t.current.get('consensus')!.die(new Error(`crash ${i}`));
      await done;
    }
    t.log.length = 0;
    t.current.get('consensus')!.die(new Error('crash 2'));
    const reason = await failed;
    expect(reason.message).to.match(/consensus died 3 times/).and.to.match(/crash 2/);
    expect(t.log).to.deep.equal(['kill log']);
  });

  it('a child that cannot start fails the start, and the children already started are stopped', async () => {
    const t = tree('rest_for_one', ['log', 'consensus'], { failStart: 'consensus' });
    const err = await t.supervisor.start().catch((e: unknown) => e);
    expect((err as Error).message).to.equal('consensus cannot start');
    expect(t.log).to.deep.equal(['start log', 'stop log']);
  });

  it('a child that exits after being stopped is not restarted', async () => {
    const t = tree('one_for_one', ['a']);
    await t.supervisor.start();
    const child = t.current.get('a')!;
    await t.supervisor.stop();
    child.die(new Error('late exit'));
    await new Promise((r) => setTimeout(r, 10));
    expect(t.log).to.deep.equal(['start a', 'stop a']);
    expect(t.supervisor.restarts.size).to.equal(0);
  });
});
