/**
 * The comparison: a local etcd cluster (Debian's etcd-server, default durability: the WAL is
 * fsynced before a proposal is acknowledged) on loopback, driven from this process.
 *
 * Clients: the `etcd3` npm package (gRPC, one HTTP/2 connection to the leader), or etcd's v3
 * JSON gRPC-gateway over HTTP/1.1 with a keep-alive agent (`--etcd-client http`, and the
 * fallback when `etcd3` cannot be loaded). `set` is a Put; `get` is a Range on one key with
 * the default serializable=false, i.e. a linearizable read.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { removeDir, trackChild, trackDir } from './cleanup.js';

export interface EtcdBinary {
  bin: string;
  version: string;
}

/** Find `etcd`, installing Debian's etcd-server with apt-get if it is missing. */
export function ensureEtcd(log: (line: string) => void): EtcdBinary | { error: string } {
  let bin = which('etcd');
  if (!bin) {
    log('etcd not found: installing Debian etcd-server (apt-get install -y etcd-server)...');
    const before = new Set(etcdPids());
    let r = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) {
      log('apt-get install failed; running apt-get update and trying once more...');
      spawnSync('apt-get', ['update'], { encoding: 'utf8' });
      r = spawnSync('apt-get', ['install', '-y', 'etcd-server'], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    // The package's init script may start a system etcd where services can start: it is
    // not ours to keep running, and it would hold the default ports.
    for (const pid of etcdPids()) {
      if (before.has(pid)) continue;
      log(`stopping the etcd (pid ${pid}) the package's init script started`);
      spawnSync('invoke-rc.d', ['etcd', 'stop'], { encoding: 'utf8' });
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // stopped by invoke-rc.d
      }
    }
    bin = which('etcd');
    if (r.status !== 0 || !bin) {
      const why = (r.error?.message ?? `${r.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ')) || `exit ${r.status}`;
      return { error: `could not install etcd-server with apt-get (${why})` };
    }
  }
  let version = 'unknown';
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8' });
    version = /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!.trim();
  } catch (err) {
    return { error: `${bin} --version failed: ${(err as Error).message}` };
  }
  return { bin, version };
}

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const out = r.stdout.trim();
  return r.status === 0 && out ? out : null;
}

function etcdPids(): number[] {
  const r = spawnSync('pgrep', ['-x', 'etcd'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

/** What the driver needs of a kv client. */
export interface KvClient {
  readonly name: string;
  set(key: string, value: Uint8Array): Promise<unknown>;
  get(key: string): Promise<unknown>;
  close(): Promise<void>;
}

interface Member {
  name: string;
  clientUrl: string;
  peerUrl: string;
  proc: ChildProcess;
  logFile: string;
}

export const ETCD_BASE_PORT = 23790;
let clockTicks = 0;
function ticksPerSecond(): number {
  clockTicks ||= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  return clockTicks;
}

export class EtcdCluster {
  private stopped = false;

  private constructor(
    readonly members: Member[],
    readonly root: string,
    public leaderUrl: string,
  ) {}

  /**
   * Start `n` members on loopback (client ports 23790+i, peer ports 23890+i) in a temp dir
   * and wait until every member is healthy and a leader is known.
   */
  static async start(bin: string, n: number): Promise<EtcdCluster> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-bench-etcd-'));
    trackDir(root);
    const spec = Array.from({ length: n }, (_, i) => ({
      name: `e${i}`,
      clientUrl: `http://127.0.0.1:${ETCD_BASE_PORT + i}`,
      peerUrl: `http://127.0.0.1:${ETCD_BASE_PORT + 100 + i}`,
    }));
    const initialCluster = spec.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    const token = `actor-raft-bench-${process.pid}-${Date.now()}`;
    // etcd reads ETCD_* variables as flags; start from none of them.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    const members: Member[] = spec.map((m) => {
      const logFile = path.join(root, `${m.name}.log`);
      const out = fs.openSync(logFile, 'a');
      const proc = spawn(
        bin,
        [
          `--name=${m.name}`,
          `--data-dir=${path.join(root, m.name)}`,
          `--listen-client-urls=${m.clientUrl}`,
          `--advertise-client-urls=${m.clientUrl}`,
          `--listen-peer-urls=${m.peerUrl}`,
          `--initial-advertise-peer-urls=${m.peerUrl}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-token=${token}`,
          '--initial-cluster-state=new',
          '--logger=zap',
          '--log-outputs=stderr',
          '--log-level=warn',
          // Room for the benchmark's revisions (the default quota is 2 GiB); durability untouched.
          '--quota-backend-bytes=8589934592',
        ],
        { stdio: ['ignore', out, out], env },
      );
      fs.closeSync(out);
      trackChild(proc);
      return { ...m, proc, logFile };
    });
    const cluster = new EtcdCluster(members, root, members[0]!.clientUrl);
    try {
      await cluster.waitReady(30_000);
    } catch (err) {
      const tails = members.map((m) => `--- ${m.name} ---\n${tail(m.logFile, 8)}`).join('\n');
      await cluster.stop();
      throw new Error(`${(err as Error).message}\n${tails}`);
    }
    return cluster;
  }

  private async waitReady(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let last = '';
    for (;;) {
      for (const m of this.members) {
        if (m.proc.exitCode !== null || m.proc.signalCode !== null) {
          throw new Error(`etcd member ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}) while starting`);
        }
      }
      try {
        const health = await Promise.all(this.members.map((m) => httpJson('GET', `${m.clientUrl}/health`)));
        const statuses = await Promise.all(this.members.map((m) => httpJson('POST', `${m.clientUrl}/v3/maintenance/status`, {})));
        const healthy = health.every((h) => (h as { health?: string }).health === 'true');
        const leaderId = (statuses[0] as { leader?: string }).leader;
        const leaderIndex = statuses.findIndex((s) => (s as { header?: { member_id?: string } }).header?.member_id === leaderId);
        if (healthy && leaderId && leaderId !== '0' && leaderIndex >= 0) {
          this.leaderUrl = this.members[leaderIndex]!.clientUrl;
          return;
        }
        last = `health ${JSON.stringify(health)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`etcd cluster not healthy within ${ms} ms (${last})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** CPU seconds (user + system) used so far by the members, from /proc. */
  cpuSeconds(): number {
    let ticks = 0;
    for (const m of this.members) {
      try {
        const stat = fs.readFileSync(`/proc/${m.proc.pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
      } catch {
        // exited, or no /proc
      }
    }
    return ticks / ticksPerSecond();
  }

  /** A client connected to the leader's client URL. */
  async client(kind: 'grpc' | 'http'): Promise<KvClient> {
    if (kind === 'grpc') {
      try {
        return await grpcClient(this.leaderUrl);
      } catch (err) {
        console.log(`  etcd3 (gRPC) client unusable (${(err as Error).message}); using the v3 JSON gateway over HTTP instead`);
      }
    }
    return httpClient(this.leaderUrl);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(
      this.members.map(
        (m) =>
          new Promise<void>((resolve) => {
            if (m.proc.exitCode !== null || m.proc.signalCode !== null) return resolve();
            const force = setTimeout(() => m.proc.kill('SIGKILL'), 3000);
            m.proc.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            m.proc.kill('SIGTERM');
          }),
      ),
    );
    removeDir(this.root);
  }
}

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function grpcClient(url: string): Promise<KvClient> {
  const { Etcd3 } = await import('etcd3');
  const etcd = new Etcd3({ hosts: [url] });
  await etcd.put('bench:probe').value('1'); // fail here, not mid-run, if it cannot talk to etcd
  return {
    name: 'etcd3 npm package (gRPC via @grpc/grpc-js, one HTTP/2 connection to the leader)',
    set: (key, value) => etcd.put(key).value(Buffer.from(value.buffer, value.byteOffset, value.byteLength)).exec(),
    get: (key) => etcd.get(key).buffer(),
    close: async () => etcd.close(),
  };
}

function httpClient(url: string): KvClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 });
  const b64 = (s: string | Uint8Array) => Buffer.from(s).toString('base64');
  return {
    name: "etcd's v3 JSON gRPC-gateway over HTTP/1.1 (node:http keep-alive agent)",
    set: (key, value) => httpJson('POST', `${url}/v3/kv/put`, { key: b64(key), value: b64(value) }, agent),
    get: async (key) => {
      const r = (await httpJson('POST', `${url}/v3/kv/range`, { key: b64(key) }, agent)) as { kvs?: { value?: string }[] };
      const v = r.kvs?.[0]?.value;
      return v === undefined ? null : Buffer.from(v, 'base64');
    },
    close: async () => agent.destroy(),
  };
}

function httpJson(method: string, url: string, body?: unknown, agent?: http.Agent): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method,
        agent: agent ?? false,
        headers: data === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 500) >= 300) return reject(new Error(`${method} ${url}: HTTP ${res.statusCode} ${text.slice(0, 200)}`));
          try {
            resolve(text ? JSON.parse(text) : {});
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}
