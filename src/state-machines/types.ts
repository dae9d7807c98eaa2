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
   */
  apply(command: unknown): unknown;

  /**
   * Optional: answer a read-only query from this peer's applied state, without the log and
   * without changing anything. What `query(id, q)` in the API calls; the answer reflects
   * what this peer has applied, which may lag the leader (a serializable, not linearizable,
   * read).
   */
  query?(query: unknown): unknown;
}

export type StateMachineFactory = () => StateMachine | Promise<StateMachine>;
