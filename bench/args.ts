/** Command lines of `npm run bench` (see USAGE) and `npm run torture` (see TORTURE_USAGE). */

export type Workload = 'set' | 'set-idem' | 'get';

export interface BenchArgs {
  peers: number[];
  inflight: number[];
  values: number[];
  workloads: Workload[];
  /** Measured seconds per point. */
  seconds: number;
  /** Warm-up seconds per point (ops run, nothing recorded). */
  warmup: number;
  vsEtcd: boolean;
  /** `--etcd-client grpc|http`: the etcd3 package (default) or the v3 JSON gateway. */
  etcdClient: 'grpc' | 'http';
  /** `--rss [N]`: seconds per RSS phase, or null when not asked for. */
  rss: number | null;
  full: boolean;
  ceiling: boolean;
  /** `--lease`: start our peers with lease reads (thesis §6.4.1), so gets skip the heartbeat round. */
  lease: boolean;
  help: boolean;
  /** Internal: `--rss-phase all-up|follower-down` runs one RSS phase in a child process. */
  rssPhase: 'all-up' | 'follower-down' | null;
}

export const USAGE = `npm run bench -- [options]

  --peers 3,5            cluster sizes (durable peers, fsync on every peer)
  --inflight 1,16,64,256,1024
                         ops in flight (closed loop: each of N clients issues its next op
                         when the previous one returns)
  --values 64,1k         value sizes in bytes (k = 1024)
  --workloads set,get    kv set (exactly once, in a client session), and linearizable get
                         (read()); set-idem: the set with { idempotent: true } (no session)
  --seconds 2            measured seconds per point
  --warmup 0.5           warm-up seconds per point
  --full                 the longer matrix: in flight 1,4,16,64,256,1024,4096; values 64,1k,16k;
                         5 s per point after 1 s warm-up (explicit flags still win)
  --vs-etcd              also run a local etcd cluster of the same size (Debian's etcd-server,
                         installed with apt-get if missing) with the same workload; prints
                         both rows and the ratio per point
  --etcd-client grpc|http  the etcd3 npm package (default) or etcd's v3 JSON gateway
  --rss [N]              only measure process RSS while writing at 256 in flight to 3 peers,
                         N seconds (default 10) with all peers up, then N with one follower stopped
  --lease                start our peers with leaseReads: gets are served by lease (§6.4.1)
                         instead of a ReadIndex round each
  --ceiling              optional, outside this repo: also run ../shared/ceiling's batch=64 and batch=1024 cases and print
                         our ratio to them
  --help

Results (JSON and an SVG chart) go to bench/results/.`;

const DEFAULTS = {
  peers: [3, 5],
  inflight: [1, 16, 64, 256, 1024],
  values: [64, 1024],
  workloads: ['set', 'get'] as Workload[],
  seconds: 2,
  warmup: 0.5,
};

const FULL = {
  peers: [3, 5],
  inflight: [1, 4, 16, 64, 256, 1024, 4096],
  values: [64, 1024, 16384],
  workloads: ['set', 'get'] as Workload[],
  seconds: 5,
  warmup: 1,
};

export function parseArgs(argv: string[]): BenchArgs {
  const explicit: Partial<BenchArgs> = {};
  let full = false;
  let vsEtcd = false;
  let ceiling = false;
  let lease = false;
  let help = false;
  let rss: number | null = null;
  let rssPhase: BenchArgs['rssPhase'] = null;
  let etcdClient: BenchArgs['etcdClient'] = 'grpc';
  const tokens = argv.flatMap((a) => (a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a]));
  for (let i = 0; i < tokens.length; i++) {
    const flag = tokens[i]!;
    const value = (): string => {
      const v = tokens[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value\n\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case '--peers':
        explicit.peers = list(flag, value(), (v) => integer(flag, v));
        break;
      case '--inflight':
        explicit.inflight = list(flag, value(), (v) => integer(flag, v));
        break;
      case '--values':
      case '--value-size': // the first version's name
        explicit.values = list(flag, value(), (v) => bytes(flag, v));
        break;
      case '--workloads':
        explicit.workloads = list(flag, value(), (v) => {
          if (v !== 'set' && v !== 'set-idem' && v !== 'get') throw new Error(`${flag}: unknown workload '${v}' (set, set-idem, get)`);
          return v;
        });
        break;
      case '--seconds':
        explicit.seconds = positive(flag, value());
        break;
      case '--warmup': {
        const w = Number(value());
        if (!Number.isFinite(w) || w < 0) throw new Error(`--warmup must be a number >= 0`);
        explicit.warmup = w;
        break;
      }
      case '--full':
        full = true;
        break;
      case '--vs-etcd':
        vsEtcd = true;
        break;
      case '--etcd-client': {
        const v = value();
        if (v !== 'grpc' && v !== 'http') throw new Error(`--etcd-client must be grpc or http, got ${v}`);
        etcdClient = v;
        break;
      }
      case '--rss': {
        const next = tokens[i + 1];
        rss = next !== undefined && /^\d+(\.\d+)?$/.test(next) ? positive(flag, tokens[++i]!) : 10;
        break;
      }
      case '--rss-phase': {
        const v = value();
        if (v !== 'all-up' && v !== 'follower-down') throw new Error(`--rss-phase must be all-up or follower-down`);
        rssPhase = v;
        break;
      }
      case '--ceiling':
        ceiling = true;
        break;
      case '--lease':
        lease = true;
        break;
      case '--help':
      case '-h':
        help = true;
        break;
      default:
        throw new Error(`unknown option ${flag}\n\n${USAGE}`);
    }
  }
  const base = full ? FULL : DEFAULTS;
  return {
    peers: explicit.peers ?? base.peers,
    inflight: explicit.inflight ?? base.inflight,
    values: explicit.values ?? base.values,
    workloads: explicit.workloads ?? base.workloads,
    seconds: explicit.seconds ?? base.seconds,
    warmup: explicit.warmup ?? base.warmup,
    vsEtcd,
    etcdClient,
    rss,
    full,
    ceiling,
    lease,
    help,
    rssPhase,
  };
}

function list<T>(flag: string, v: string, each: (s: string) => T): T[] {
  const items = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new Error(`${flag} needs at least one value`);
  return [...new Set(items.map(each))];
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} must be a positive number, got ${v}`);
  return n;
}

function integer(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${flag} must be positive integers, got ${v}`);
  return n;
}

/** "64", "1k", "1KiB", "16k" → bytes. */
export function bytes(flag: string, v: string): number {
  const m = /^(\d+)\s*(k|kb|kib|m|mb|mib|b)?$/i.exec(v);
  if (!m) throw new Error(`${flag}: cannot read '${v}' as a size (64, 1k, 16KiB)`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const n = Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? 1024 * 1024 : 1);
  if (n <= 0) throw new Error(`${flag}: size must be positive`);
  return n;
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

/** `npm run torture` options (see TORTURE_USAGE). */
export interface TortureArgs {
  /** Total seconds of rounds. */
  seconds: number;
  /** Seed of round 0; round i uses seed + i. */
  seed: number;
  /** Seconds per round at most. */
  round: number;
  /** Every round serves gets by lease reads (else odd rounds only). */
  lease: boolean;
  /** Every round is a membership round (else every third). */
  membership: boolean;
  /** Every round runs exactly-once writes (else rounds 1, 2 mod 4). */
  exactlyOnce: boolean;
  help: boolean;
}

export const TORTURE_USAGE = `npm run torture -- [options]

Jepsen-style rounds (5 peers, concurrent clients, a seeded nemesis) back to back, each
checked for linearizability and for every peer applying the same log. A failure prints the
seed and the nemesis schedule that reproduce it and exits 1. Ctrl-C stops the run and removes
its temporary data.

  --seconds 60           total seconds of rounds
  --seed S               seed of round 0 (round i uses S + i); default from the clock
  --round 30             seconds per round at most
  --lease                every round serves gets by lease reads (default: odd rounds)
  --membership           every round changes membership under the faults (default: every third)
  --exactly-once         every round sends exactly-once writes in client sessions
                         (default: rounds 1, 2 mod 4)
  --help, -h             print this and exit`;

export function parseTortureArgs(argv: readonly string[], now = Date.now()): TortureArgs {
  const out: TortureArgs = { seconds: 60, seed: now % 1_000_000, round: 30, lease: false, membership: false, exactlyOnce: false, help: false };
  const tokens = argv.flatMap((a) => (a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a]));
  for (let i = 0; i < tokens.length; i++) {
    const flag = tokens[i]!;
    const value = (): string => {
      const v = tokens[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value\n\n${TORTURE_USAGE}`);
      return v;
    };
    switch (flag) {
      case '--seconds':
      case '--seed':
      case '--round':
        out[flag.slice(2) as 'seconds' | 'seed' | 'round'] = positive(flag, value());
        break;
      case '--lease':
        out.lease = true;
        break;
      case '--membership':
        out.membership = true;
        break;
      case '--exactly-once':
        out.exactlyOnce = true;
        break;
      case '--help':
      case '-h':
        out.help = true;
        break;
      default:
        throw new Error(`unknown option ${flag}\n\n${TORTURE_USAGE}`);
    }
  }
  return out;
}
