/**
 * The piscina worker of `KvChecker`: one task is a batch of keys, each checked by the same
 * engine `checkKvSync` runs (`search.ts`). Tasks are plain data both ways (structured clone).
 */
import { checkKey, type KeyOutcome, type KeyTask } from './search.js';

export default function checkKeys(tasks: KeyTask[]): KeyOutcome[] {
  return tasks.map(checkKey);
}
