/**
 * Our side of the benchmark: a durable actor-raft cluster in this process, and the two
 * workloads against its leader.
 *
 * Linearizable gets go through `read(id, query)`: ReadIndex (thesis §6.4), or lease reads
 * (§6.4.1) when the cluster is started with `leaseReads`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as api from '../src/api/index.js';
import { onInterrupt, removeDir, trackDir } from './cleanup.js';

export class RaftCluster {
  private stopped = false;
  private readonly unregister: () => void;

  private constructor(
    readonly ids: string[],
    readonly root: string,
    public leader: string,
  ) {
    this.unregister = onInterrupt(() => this.stop());
  }

  /** Start `peers` durable peers in a fresh temp dir, bootstrap them, wait for a leader. */
  static async start(peers: number, prefix: string, options: { leaseReads?: boolean } = {}): Promise<RaftCluster> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-bench-'));
    trackDir(root);
    const ids = Array.from({ length: peers }, (_, i) => `${prefix}${i + 1}`);
    try {
      await Promise.all(ids.map((id) => api.startNode(id, { stateMachine: 'kv', dataDir: path.join(root, id), leaseReads: options.leaseReads ?? false })));
      await api.setConfig(ids[0]!, ids);
      await api.op(ids[0]!, { type: 'set', key: 'bench:ready', value: true }, { timeoutMs: 30_000 });
      const leader = (await api.status(ids[0]!)).leader ?? ids[0]!;
      return new RaftCluster(ids, root, leader);
    } catch (err) {
      await Promise.all(ids.map((id) => api.stopNode(id).catch(() => undefined)));
      removeDir(root);
      throw err;
    }
  }

  set(key: string, value: Uint8Array): Promise<unknown> {
    return api.op(this.leader, { type: 'set', key, value });
  }

  setIdempotent(key: string, value: Uint8Array): Promise<unknown> {
    return api.op(this.leader, { type: 'set', key, value }, { idempotent: true });
  }

  get(key: string): Promise<unknown> {
    const q = { type: 'get', key };
    return api.read(this.leader, q);
  }

  /** Stop one follower (cleanly); returns its id. */
  async stopFollower(): Promise<string> {
    const follower = this.ids.find((id) => id !== this.leader)!;
    await api.stopNode(follower);
    return follower;
  }

  status(id = this.leader): Promise<api.NodeStatus> {
    return api.status(id);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unregister();
    await Promise.all(this.ids.map((id) => api.stopNode(id).catch(() => undefined)));
    removeDir(this.root);
  }
}
