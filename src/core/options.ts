/**
 * The core's options: their defaults, and the checks a peer runs before it starts on them
 * (after etcd/raft's `Config.validate`: one precise sentence per bad setting).
 */
import type { CoreOptions } from './types.js';

export const DEFAULT_CORE_OPTIONS: CoreOptions = {
  heartbeatTicks: 1,
  electionTicks: 10,
  maxEntriesPerAppend: 4096,
  maxInflightAppends: 64,
  maxAppendBytes: 1 << 20,
  maxInflightBytes: 16 << 20,
  maxCachedEntries: 16384,
  maxCachedBytes: 32 << 20,
  leaseReads: false,
  clockDriftBound: 1.5,
  preVote: true,
  snapshotThreshold: 16384,
  snapshotChunkBytes: 1 << 20,
  catchUpTicks: 400,
};

/** `o` itself if every option is usable; a RangeError or TypeError naming the first one that is not. */
export function validateCoreOptions(o: CoreOptions): CoreOptions {
  const positive = (name: Exclude<keyof CoreOptions, 'leaseReads' | 'preVote'>) => {
    if (!Number.isSafeInteger(o[name]) || o[name] < 1) {
      throw new RangeError(`options.${name} must be a positive integer, got ${String(o[name])}`);
    }
  };
  positive('heartbeatTicks');
  positive('electionTicks');
  positive('maxEntriesPerAppend');
  positive('maxInflightAppends');
  positive('maxAppendBytes');
  positive('maxInflightBytes');
  positive('maxCachedEntries');
  positive('maxCachedBytes');
  positive('snapshotChunkBytes');
  positive('catchUpTicks');
  if (!Number.isSafeInteger(o.snapshotThreshold) || o.snapshotThreshold < 0) {
    throw new RangeError(`options.snapshotThreshold must be a non-negative integer (0: never), got ${String(o.snapshotThreshold)}`);
  }
  if (typeof o.preVote !== 'boolean') throw new TypeError(`options.preVote must be a boolean, got ${String(o.preVote)}`);
  if (o.electionTicks <= o.heartbeatTicks) {
    throw new RangeError('options.electionTicks must be greater than options.heartbeatTicks');
  }
  if (typeof o.leaseReads !== 'boolean') throw new TypeError(`options.leaseReads must be a boolean, got ${String(o.leaseReads)}`);
  if (typeof o.clockDriftBound !== 'number' || !Number.isFinite(o.clockDriftBound) || o.clockDriftBound < 1) {
    throw new RangeError(`options.clockDriftBound must be a number >= 1, got ${String(o.clockDriftBound)}`);
  }
  if (o.leaseReads && leaseTicks(o) < 1) {
    throw new RangeError(
      `lease reads need a lease of at least one tick: (electionTicks - 1) / clockDriftBound - 1 = ${leaseTicks(o)}; raise electionTicks or lower clockDriftBound`,
    );
  }
  return o;
}

/**
 * How long a lease lasts, in the leader's ticks from the start of a heartbeat round that a
 * quorum acknowledged (thesis §6.4.1). Each acknowledging follower ignores RequestVotes for an
 * election timeout of its own clock after it heard the round (§4.2.3, `voteGuard`): at least
 * electionTicks - 1 whole ticks of its clock, which the leader's clock may count as little as
 * (electionTicks - 1) / clockDriftBound; one more tick is taken off because the leader's
 * count of the round's start may lag the real start by up to one tick.
 */
export function leaseTicks(o: CoreOptions): number {
  return Math.floor((o.electionTicks - 1) / o.clockDriftBound) - 1;
}
