/**
 * A worker thread as a supervised child: started from an actor's entry file, ready when it
 * posts `{ type: 'ready' }`, exited (for the supervisor) when it throws or ends unasked.
 */
import { Worker, type TransferListItem } from 'node:worker_threads';
import type { Child } from './supervisor.js';

export interface WorkerChild extends Child {
  readonly worker: Worker;
  /** Settles when the thread has exited, for whatever reason (asked to or not). */
  readonly gone: Promise<void>;
  /** Fault injection: die as from an uncaught exception; the supervisor sees a crash. */
  crash(): Promise<void>;
}

export interface WorkerChildOptions {
  entry: URL;
  workerData: unknown;
  transferList: TransferListItem[];
  /** Orderly shutdown of a ready worker (may message it); the worker is terminated after. */
  shutdown?: (worker: Worker) => Promise<void>;
  /**
   * Make the worker die abruptly at a safe point (e.g. post it a crash message) before
   * `kill` falls back to terminate(): terminating a thread inside an LMDB write can hang.
   */
  abort?: (worker: Worker) => void;
  /** Raw messages from the worker other than `ready`. */
  onMessage?: (message: unknown) => void;
  /**
   * If this settles before the worker is ready, the start fails with its reason and the
   * worker is terminated (e.g. the actor it waits on to become ready has died).
   */
  abandon?: Promise<Error>;
}

/** How long an orderly shutdown may take before the thread is terminated anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
const ABORT_TIMEOUT_MS = 5_000;

export function startWorkerChild(o: WorkerChildOptions): Promise<WorkerChild> {
  const worker = new Worker(o.entry, { workerData: o.workerData, transferList: o.transferList });
  let expectingExit = false;
  let alive = true;
  const gone = new Promise<void>((r) =>
    worker.once('exit', () => {
      alive = false;
      r();
    }),
  );
  let resolveExited!: (e: Error) => void;
  const exited = new Promise<Error>((r) => (resolveExited = r));

  return new Promise<WorkerChild>((resolveStart, rejectStart) => {
    let ready = false;
    const fail = (err: Error) => {
      if (!ready) {
        rejectStart(err);
        void worker.terminate();
      } else if (!expectingExit) {
        resolveExited(err);
      }
    };
    worker.on('error', (err) => fail(err instanceof Error ? err : new Error(String(err))));
    void o.abandon?.then((reason) => {
      if (!ready) fail(reason);
    });
    worker.on('exit', (code) => fail(new Error(`worker exited with code ${code}`)));
    worker.on('message', (m: unknown) => {
      if (!ready && typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'ready') {
        ready = true;
        resolveStart(child);
        return;
      }
      o.onMessage?.(m);
    });
    const crashThenTerminate = async () => {
      if (alive && o.abort) {
        const gone = new Promise<void>((r) => worker.once('exit', () => r()));
        o.abort(worker);
        await withTimeout(gone, ABORT_TIMEOUT_MS).catch(() => undefined);
      }
      await worker.terminate();
    };
    const child: WorkerChild = {
      worker,
      gone,
      exited,
      async stop() {
        expectingExit = true;
        try {
          if (alive && o.shutdown) await withTimeout(o.shutdown(worker), SHUTDOWN_TIMEOUT_MS);
        } finally {
          await worker.terminate();
        }
      },
      async kill() {
        expectingExit = true;
        await crashThenTerminate();
      },
      async crash() {
        await crashThenTerminate();
      },
    };
  });
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`worker shutdown took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
