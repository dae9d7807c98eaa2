export { configDecision, createCore, isBlank, leaseTicks, status, step, validateCoreOptions } from './step.js';
export type { ConfigDecision, CoreInit } from './step.js';
export { entryBytes, RaftLog } from './raft-log.js';
export { DEFAULT_CORE_OPTIONS } from './types.js';
export type { ClientErrorCode, CoreOptions, CoreState, Effect, FetchReason, Input, PendingWrite, Progress, ReadBatch, ReadState, Role, Status, StepResult } from './types.js';
