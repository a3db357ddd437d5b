import type { Collection, Db } from 'mongodb'
import { COLLECTIONS, type ForgottenDoc } from './collections.ts'

/** Repos whose moods were erased (`forget`): echoes of older writes must not bring them back. */
export class ForgottenStore {
  readonly #docs: Collection<ForgottenDoc>
  constructor(db: Db) {
    this.#docs = db.collection<ForgottenDoc>(COLLECTIONS.forgotten)
  }

  /** Written before the erasure starts: anything older than `atUs` is dropped from then on. */
  async mark(did: string, user: string, atUs: number): Promise<void> {
    await this.#docs.updateOne({ _id: did }, { $set: { user, atUs } }, { upsert: true })
  }

  /** When each of these repos was erased (microseconds), for those that were. */
  async since(dids: Iterable<string>): Promise<Map<string, number>> {
    const ids = [...new Set(dids)]
    if (ids.length === 0) return new Map()
    const docs = await this.#docs.find({ _id: { $in: ids } }).toArray()
    return new Map(docs.map((d) => [d._id, d.atUs]))
  }
}
