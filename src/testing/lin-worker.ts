/**
 * The piscina worker of `Checker` (and so of `KvChecker`): one task is a batch of parts of a
 * history and where to import their model from (`Model.source`; models hold functions, which
 * cannot be posted). The model is imported once per thread and each part checked by the same
 * engine `checkHistorySync` runs (`search.ts`). Parts and outcomes are plain data both ways
 * (structured clone).
 */
import type { WorkerTask } from './checker.js';
import { loadModel } from './model.js';
import { checkPart, type PartOutcome } from './search.js';
import { adapterFor } from './state-model.js';

export default async function checkParts(task: WorkerTask): Promise<PartOutcome[]> {
  const adapter = adapterFor(await loadModel(task.source, task.name));
  return task.parts.map((part) => checkPart(part, adapter));
}
