import type { Collection, Db } from 'mongodb'
import { bulkWrite } from './bulk.ts'
import { COLLECTIONS, type RepoStateDoc } from './collections.ts'

/** How far each repo has been read whole: a later read at the same rev has nothing to do. */
export class RepoStateStore {
  readonly #docs: Collection<RepoStateDoc>
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
    this.#docs = db.collection<RepoStateDoc>(COLLECTIONS.repos)
  }

  async get(did: string): Promise<RepoStateDoc | null> {
    return this.#docs.findOne({ _id: did })
  }

  /** What the last reads of these repos reached (one query for all). */
  async many(dids: readonly string[]): Promise<Map<string, RepoStateDoc>> {
    const docs = await this.#docs.find({ _id: { $in: [...dids] } }).toArray()
    return new Map(docs.map((d) => [d._id, d]))
  }

  async saveMany(states: readonly Omit<RepoStateDoc, 'syncedAt'>[]): Promise<void> {
    if (states.length === 0) return
    const syncedAt = new Date()
    await bulkWrite(
      this.#db,
      this.#docs,
      states.map(({ _id, ...state }) => ({ updateOne: { filter: { _id }, update: { $set: { ...state, syncedAt } }, upsert: true } })),
    )
  }

  /** The rev no longer describes MongoDB (moods hidden): the next backfill must read the repo. */
  async forget(did: string): Promise<void> {
    await this.#docs.deleteOne({ _id: did })
  }

  /** forget for many repos, in one delete. */
  async forgetMany(dids: readonly string[]): Promise<void> {
    if (dids.length === 0) return
    if (dids.length === 1) return this.forget(dids[0]!)
    await this.#docs.deleteMany({ _id: { $in: [...new Set(dids)] } })
  }
}
