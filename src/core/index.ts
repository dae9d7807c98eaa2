export { configDecision, createCore, isBlank, status, step } from './step.js';
export type { ConfigDecision, CoreInit } from './step.js';
export { DEFAULT_CORE_OPTIONS, leaseTicks, validateCoreOptions } from './options.js';
export { entryBytes, RaftLog } from './raft-log.js';
export type { ClientErrorCode, CoreOptions, CoreState, Effect, FetchReason, Input, PendingWrite, Progress, ReadBatch, ReadState, Role, Status, StepResult } from './types.js';
