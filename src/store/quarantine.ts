import { createHash } from 'node:crypto'
import type { Db } from 'mongodb'
import { bulkWrite } from './bulk.ts'
import { COLLECTIONS, type QuarantineDoc } from './collections.ts'

export type QuarantineEntry = Omit<QuarantineDoc, '_id' | 'at'>

export function idOf(parts: readonly unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32)
}

/** Input that failed validation: kept with its reason, never applied, never fatal. */
export class QuarantineStore {
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
  }

  /** Idempotent: the same input quarantined twice (a replay) is one entry. */
  async add(entries: readonly QuarantineEntry[]): Promise<void> {
    if (entries.length === 0) return
    const at = new Date()
    await bulkWrite(
      this.#db,
      this.#db.collection<QuarantineDoc>(COLLECTIONS.quarantine),
      entries.map(dropUndefined).map((entry) => {
        const _id = idOf([entry.source, entry.did, entry.rkey, entry.cid, entry.cursor, entry.reason])
        return { updateOne: { filter: { _id }, update: { $setOnInsert: { ...entry, at } }, upsert: true } }
      }),
    )
  }

  async list(filter: Partial<Pick<QuarantineDoc, 'did' | 'rkey' | 'source'>> = {}): Promise<QuarantineDoc[]> {
    return this.#db.collection<QuarantineDoc>(COLLECTIONS.quarantine).find(filter).sort({ at: 1, _id: 1 }).toArray()
  }
}

/** MongoDB stores `undefined` as null; entries keep only the fields they have. */
function dropUndefined(entry: QuarantineEntry): QuarantineEntry {
  return Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined)) as QuarantineEntry
}
