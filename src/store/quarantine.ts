import { createHash } from 'node:crypto'
import type { Db } from 'mongodb'
import { bulkWriteChunked } from './bulk.ts'
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
    await bulkWriteChunked(
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

/** Missed stretches of the stream, and the repos that need reading whole because of them. */
export class GapStore {
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
  }

  /** Records the gap and queues every DID we index for backfill: any of them may have missed events. */
  async record(gap: Omit<GapDoc, '_id' | 'at'>): Promise<number> {
    const _id = idOf([gap.source, gap.requested, gap.cursor, gap.reason])
    await this.#db.collection<GapDoc>(COLLECTIONS.gaps).updateOne({ _id }, { $setOnInsert: { ...gap, at: new Date() } }, { upsert: true })
    const dids = (await this.#db.collection<MoodDoc>(COLLECTIONS.moods).distinct('atproto.did', {})).filter((d): d is string => typeof d === 'string')
    return this.queueBackfill(dids, gap.reason)
  }

  /** Queues repos to be read whole; a repo already queued keeps its first reason. */
  async queueBackfill(dids: readonly string[], reason: string): Promise<number> {
    if (dids.length === 0) return 0
    const since = new Date()
    await bulkWriteChunked(
      this.#db.collection<BackfillDoc>(COLLECTIONS.backfill),
      dids.map((did) => ({ updateOne: { filter: { _id: did }, update: { $setOnInsert: { reason, since } }, upsert: true } })),
    )
    return dids.length
  }

  async count(): Promise<number> {
    return this.#db.collection(COLLECTIONS.gaps).countDocuments()
  }

  async pendingBackfills(): Promise<BackfillDoc[]> {
    return this.#db.collection<BackfillDoc>(COLLECTIONS.backfill).find().sort({ _id: 1 }).toArray()
  }
}
