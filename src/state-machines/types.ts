/**
 * The pluggable state machine. It runs inside the consensus actor and sees every committed
 * command exactly once per peer, in log order.
 *
 * A module given to `startNode(id, { stateMachine: { module } })` must export
 * `createStateMachine(): StateMachine | Promise<StateMachine>` (or a default export of that
 * function). Commands arrive decoded from msgpack; results must be msgpack-encodable.
 */
export interface StateMachine {
  /**
   * Apply one committed command and return its result. `apply` must be deterministic: every
   * peer applies the same commands and must reach the same state. To refuse a command (bad
   * shape, bad argument) throw, ideally an `InvalidCommandError`, and leave the state
   * unchanged: the error reaches the caller, and every peer refuses it alike.
   *
   * The command arrives once per peer however often its client retried it: the client
   * sessions in front of the machine (src/sessions.ts, thesis §6.3) answer a repeat with the
   * saved result. So the result must be a msgpack value that does not change afterwards
   * (return a copy, not a live part of the state).
   */
  apply(command: unknown): unknown;

  /**
   * Optional: answer a read-only query from this peer's applied state, without the log and
   * without changing anything. What `query(id, q)` in the API calls; the answer reflects
   * what this peer has applied, which may lag the leader (a serializable, not linearizable,
   * read).
   */
  query?(query: unknown): unknown;

  /**
   * Optional, with `restore`: the whole state as bytes, for a log snapshot (§7). The consensus
   * actor calls it between two applies and stores the bytes in place of every entry applied so
   * far, so they must stand for exactly the state those commands produced, and nothing else:
   * no clock, no randomness, nothing of this process. Make them deterministic too (the same
   * state gives the same bytes, on every peer and after a `restore`), so that peers' snapshots
   * can be compared. The caller owns the returned bytes.
   *
   * A machine without `snapshot` and `restore` cannot have its log compacted: its peer never
   * takes a snapshot, so its log grows without bound, and a follower that falls behind the
   * leader's compacted log cannot be caught up by InstallSnapshot.
   */
  snapshot?(): Uint8Array;

  /**
   * Optional, with `snapshot`: replace the whole state with the one `data` (bytes from
   * `snapshot()`, possibly of another peer) stands for, dropping everything applied before.
   * Called on a restart from a stored snapshot and when a leader installs one (InstallSnapshot);
   * the commands after the snapshot's index are then applied on top. If `data` is not a
   * snapshot of this machine, throw and leave the state unchanged.
   */
  restore?(data: Uint8Array): void;
}

export type StateMachineFactory = () => StateMachine | Promise<StateMachine>;
