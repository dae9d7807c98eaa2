/** actor-raft: the package entry. */
export { events, nemesis, op, query, read, runningNodes, setConfig, startNode, status, stopNode, transferLeadership } from './api.js';
export type { NodeOptions, NodeStatus, OpOptions, RaftEvents } from './api.js';
export * from './errors.js';
export type { StateMachine, StateMachineFactory } from './state-machines/types.js';
export type { KvCommand } from './state-machines/kv.js';
