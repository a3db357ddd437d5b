import type { Db } from 'mongodb'
import { COLLECTIONS, type CursorDoc } from './collections.ts'

/** Saved stream positions, one document per source (keyed by source kind and URL). */
export class CursorStore {
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
  }

  async get(id: string): Promise<number | undefined> {
    const doc = await this.#db.collection<CursorDoc>(COLLECTIONS.cursors).findOne({ _id: id })
    return doc?.cursor
  }

  /** Callers save only after everything before `cursor` is durable; the store just records it. */
  async save(id: string, cursor: number): Promise<void> {
    await this.#db
      .collection<CursorDoc>(COLLECTIONS.cursors)
      .updateOne({ _id: id }, { $set: { cursor, updatedAt: new Date() } }, { upsert: true })
  }
}
