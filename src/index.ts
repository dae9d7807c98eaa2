/** actor-raft: the package entry. */
export { events, nemesis, op, query, read, runningNodes, setConfig, startNode, status, stopNode, transferLeadership, transportAddress, transportStats } from './api/index.js';
export type { NetworkOptions, NodeOptions, NodeStatus, OpOptions, RaftEvents, ReadOptions, WriteOptions } from './api/index.js';
export { TcpSwitchboard } from './transport/tcp.js';
export type { TcpStats, TcpSwitchboardOptions, TcpTlsOptions } from './transport/tcp.js';
export * from './errors.js';
export type { StateMachine, StateMachineFactory } from './state-machines/types.js';
export type { KvCommand } from './state-machines/kv.js';
export { startHttpServer } from './http/server.js';
export type { HttpServer, HttpServerOptions, HttpTlsOptions, HttpBackend } from './http/server.js';
