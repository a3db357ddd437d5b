import { createHash } from 'node:crypto'
import type { Db } from 'mongodb'
import { COLLECTIONS, type BackfillDoc, type GapDoc, type MoodDoc, type QuarantineDoc } from './collections.ts'

export type QuarantineEntry = Omit<QuarantineDoc, '_id' | 'at'>

function idOf(parts: readonly unknown[]): string {
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
    await this.#db.collection<QuarantineDoc>(COLLECTIONS.quarantine).bulkWrite(
      entries.map((entry) => {
        const _id = idOf([entry.source, entry.did, entry.rkey, entry.cid, entry.cursor, entry.reason])
        return { updateOne: { filter: { _id }, update: { $setOnInsert: { ...entry, at } }, upsert: true } }
      }),
      { ordered: true },
    )
  }

  async list(filter: Partial<Pick<QuarantineDoc, 'did' | 'rkey' | 'source'>> = {}): Promise<QuarantineDoc[]> {
    return this.#db.collection<QuarantineDoc>(COLLECTIONS.quarantine).find(filter).sort({ at: 1, _id: 1 }).toArray()
  }
}

/** Missed stretches of the stream, and the repos that need reading whole because of them. */
export class GapStore {
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
  }

  /** Records the gap and queues `dids` (or, when unknown, every DID we index) for backfill. */
  async record(gap: Omit<GapDoc, '_id' | 'at'>, dids?: readonly string[]): Promise<number> {
    const at = new Date()
    const _id = idOf([gap.source, gap.requested, gap.cursor, gap.reason])
    await this.#db.collection<GapDoc>(COLLECTIONS.gaps).updateOne({ _id }, { $setOnInsert: { ...gap, at } }, { upsert: true })
    const targets = dids ?? (await this.#db.collection<MoodDoc>(COLLECTIONS.moods).distinct('atproto.did', {})).filter((d): d is string => typeof d === 'string')
    if (targets.length === 0) return 0
    await this.#db.collection<BackfillDoc>(COLLECTIONS.backfill).bulkWrite(
      targets.map((did) => ({ updateOne: { filter: { _id: did }, update: { $setOnInsert: { reason: gap.reason, since: at } }, upsert: true } })),
      { ordered: true },
    )
    return targets.length
  }

  async count(): Promise<number> {
    return this.#db.collection(COLLECTIONS.gaps).countDocuments()
  }

  async pendingBackfills(): Promise<BackfillDoc[]> {
    return this.#db.collection<BackfillDoc>(COLLECTIONS.backfill).find().sort({ _id: 1 }).toArray()
  }
}
