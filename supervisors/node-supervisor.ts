/**
 * The node supervisor: the top of this process's tree, above one peer supervisor per peer
 * (each `rest_for_one` over [log actor, consensus actor]). It owns the in-process
 * switchboard that wires the peers' consensus actors together.
 *
 * Peers are temporary children: a peer whose supervisor exceeds its restart intensity is
 * not restarted from here; its supervisor has already stopped its actors, and the node
 * supervisor removes it and reports why (`peerFailed`), so the owner can fail its
 * operations and tell the user. `startNode` brings it back.
 */
import { EventEmitter } from 'node:events';
import { InProcessSwitchboard } from '../src/transport/in-process.js';
import { PeerSupervisor, type PeerHooks, type PeerSpec } from './peer-supervisor.js';

export interface NodeSupervisorEvents {
  peerFailed: [id: string, reason: Error];
  peerRestarted: [id: string, reason: string];
}

export class NodeSupervisor extends EventEmitter<NodeSupervisorEvents> {
  private readonly switchboard = new InProcessSwitchboard();
  private readonly peers = new Map<string, PeerSupervisor>();

  /** Start a peer's tree; rejects (and leaves nothing running) if it cannot start. */
  async startPeer(spec: PeerSpec, hooks: Omit<PeerHooks, 'failed'>): Promise<PeerSupervisor> {
    if (this.peers.has(spec.id)) throw new Error(`peer ${spec.id} is already supervised`);
    const peer = new PeerSupervisor(spec, spec.switchboard ?? this.switchboard, {
      ...hooks,
      failed: (reason) => {
        // Escalation: the peer's supervisor gave up and killed its actors.
        if (this.peers.get(spec.id) === peer) this.peers.delete(spec.id);
        this.emit('peerFailed', spec.id, reason);
      },
    });
    peer.onRestart((reason) => this.emit('peerRestarted', spec.id, reason));
    this.peers.set(spec.id, peer);
    try {
      await peer.start();
    } catch (err) {
      this.peers.delete(spec.id);
      throw err;
    }
    return peer;
  }

  peer(id: string): PeerSupervisor | undefined {
    return this.peers.get(id);
  }

  /** Orderly stop: the consensus actor, then the log actor closing LMDB. */
  async stopPeer(id: string): Promise<void> {
    const peer = this.peers.get(id);
    this.peers.delete(id);
    await peer?.stop();
  }

  /** Both actors die at once, without cleanup. */
  async killPeer(id: string): Promise<void> {
    const peer = this.peers.get(id);
    this.peers.delete(id);
    await peer?.kill();
  }
}
