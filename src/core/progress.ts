/**
 * What the leader knows of one follower (§5.3 nextIndex/matchIndex) and the window of
 * AppendEntries in flight to it: how many and how many bytes (pipelining, thesis §10.2.2),
 * and the mode that says how it is sent to (after etcd/raft's `tracker.Progress`). Pure
 * bookkeeping: the step function decides what to send, these functions count it.
 */
import type { Entry, SnapshotMeta } from '../messages.js';
import { entryBytes } from './raft-log.js';
import type { CoreOptions, Progress } from './types.js';

/** A follower the leader has just started replicating to: probing from `nextIndex`. */
export function newProgress(nextIndex: number): Progress {
  return {
    nextIndex,
    matchIndex: 0,
    mode: 'probe',
    probeSent: false,
    inflight: [],
    inflightBytes: 0,
    fetching: false,
    snapshot: null,
  };
}

/**
 * May another AppendEntries go to this follower? A probe goes alone (or with a heartbeat); a
 * replicating follower's window is bounded in messages and in bytes.
 */
export function isWindowOpen(pr: Progress, o: CoreOptions, heartbeat: boolean): boolean {
  return pr.mode === 'probe'
    ? heartbeat || !pr.probeSent
    : pr.inflight.length < o.maxInflightAppends && pr.inflightBytes < o.maxInflightBytes;
}

/**
 * The leading entries of `entries` that fit in one AppendEntries of at most `maxBytes` bytes
 * of entries, and their bytes. At least one entry, however large, so a big entry still goes.
 */
export function fitEntries(entries: Entry[], maxBytes: number): { entries: Entry[]; bytes: number } {
  let bytes = 0;
  for (let k = 0; k < entries.length; k++) {
    const size = entryBytes(entries[k]!);
    if (k > 0 && bytes + size > maxBytes) return { entries: entries.slice(0, k), bytes };
    bytes += size;
  }
  return { entries, bytes };
}

/**
 * Count an AppendEntries just sent from `pr.nextIndex` with `entries` (of `bytes` bytes) in the
 * window; true if it carried entries that are now in flight. A probe is only marked as out.
 */
export function recordSent(pr: Progress, entries: Entry[], bytes: number): boolean {
  if (pr.mode === 'probe') {
    pr.probeSent = true;
    return false;
  }
  if (entries.length === 0) return false;
  const last = entries[entries.length - 1]!.index;
  pr.nextIndex = last + 1;
  pr.inflight.push({ last, bytes });
  pr.inflightBytes += bytes;
  return true;
}

/** The follower stored everything up to `matchIndex`: the AppendEntries that carried it leave the window. */
export function freeInflight(pr: Progress, matchIndex: number): void {
  while (pr.inflight.length > 0 && pr.inflight[0]!.last <= matchIndex) pr.inflightBytes -= pr.inflight.shift()!.bytes;
}

function clearWindow(pr: Progress): void {
  pr.inflight = [];
  pr.inflightBytes = 0;
  pr.probeSent = false;
}

/** The logs were found to match (or the follower holds our snapshot's last entry): pipeline from here. */
export function becomeReplicate(pr: Progress): void {
  pr.mode = 'replicate';
  pr.snapshot = null;
  clearWindow(pr);
}

/** Look for where the follower's log matches ours, one AppendEntries at a time, from `nextIndex`. */
export function becomeProbe(pr: Progress, nextIndex: number): void {
  pr.nextIndex = nextIndex;
  pr.mode = 'probe';
  pr.snapshot = null;
  clearWindow(pr);
}

/** The entries the follower needs are compacted (§7): send it the snapshot `meta` describes, from its start. */
export function becomeSnapshot(pr: Progress, meta: SnapshotMeta): void {
  pr.mode = 'snapshot';
  clearWindow(pr);
  pr.snapshot = { index: meta.index, term: meta.term, offset: 0, sentAt: -1, reported: 0 };
}
