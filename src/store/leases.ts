import type { Collection, Db } from 'mongodb'
import { COLLECTIONS, type LeaseDoc } from './collections.ts'
import { isDuplicateKey } from './mongo-errors.ts'

/**
 * Leases in MongoDB: a lease is held by one process until it expires, and renewed by that
 * process only. Taking one is one atomic upsert guarded on "mine or expired"; when another
 * holds it, the upsert's insert collides on `_id` and the answer is no.
 */
export class LeaseStore {
  readonly #docs: Collection<LeaseDoc>

  constructor(db: Db) {
    this.#docs = db.collection<LeaseDoc>(COLLECTIONS.leases)
  }

  /** Takes or renews `name` for `holder` until `ttlMs` from now; false when another holds it. */
  async acquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const now = new Date()
    try {
      const doc = await this.#docs.findOneAndUpdate(
        { _id: name, $or: [{ holder }, { expiresAt: { $lt: now } }] },
        { $set: { holder, expiresAt: new Date(now.getTime() + ttlMs) }, $setOnInsert: { acquiredAt: now } },
        { upsert: true, returnDocument: 'after' },
      )
      return doc?.holder === holder
    } catch (err) {
      if (isDuplicateKey(err)) return false
      throw err
    }
  }

  /** Gives `name` up at once (on shutdown), so another process need not wait for it to expire. */
  async release(name: string, holder: string): Promise<void> {
    await this.#docs.deleteOne({ _id: name, holder })
  }

  async get(name: string): Promise<LeaseDoc | null> {
    return this.#docs.findOne({ _id: name })
  }
}
