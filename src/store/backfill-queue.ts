import type { Collection, Db } from 'mongodb'
import { bulkWrite } from './bulk.ts'
import { COLLECTIONS, type BackfillDoc } from './collections.ts'

/** Repos to be read whole (gaps, `#sync`, an interrupted discovery); the backfill drains it. */
export class BackfillQueue {
  readonly #docs: Collection<BackfillDoc>
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
    this.#docs = db.collection<BackfillDoc>(COLLECTIONS.backfill)
  }

  /** Queues repos; a repo already queued keeps its first reason and its retry schedule. */
  async add(dids: readonly string[], reason: string): Promise<number> {
    if (dids.length === 0) return 0
    const since = new Date()
    await bulkWrite(
      this.#db,
      this.#docs,
      dids.map((did) => ({ updateOne: { filter: { _id: did }, update: { $setOnInsert: { reason, since } }, upsert: true } })),
    )
    return dids.length
  }

  /** Repos that are due: never tried, or past their retry time; oldest first. */
  async due(limit: number, now = new Date()): Promise<BackfillDoc[]> {
    return this.#docs
      .find({ $or: [{ nextAttemptAt: { $exists: false } }, { nextAttemptAt: { $lte: now } }] })
      .sort({ since: 1 })
      .limit(limit)
      .toArray()
  }

  /** A failed read: try again at `nextAttemptAt`, and keep why it failed. */
  async retryLater(did: string, attempts: number, nextAttemptAt: Date, error: string): Promise<void> {
    await this.#docs.updateOne({ _id: did }, { $set: { attempts, nextAttemptAt, error } })
  }

  /** Takes repos off the queue (they are caught up). */
  async remove(dids: readonly string[]): Promise<void> {
    if (dids.length === 0) return
    await this.#docs.deleteMany({ _id: { $in: [...dids] } })
  }

  async count(): Promise<number> {
    return this.#docs.countDocuments()
  }

  /** Every queued repo, in DID order. */
  async list(): Promise<BackfillDoc[]> {
    return this.#docs.find().sort({ _id: 1 }).toArray()
  }
}
