import type { Collection, Db } from 'mongodb'
import { bulkWrite } from './bulk.ts'
import { COLLECTIONS, type IdentityDoc } from './collections.ts'

/**
 * The latest handle of each DID moodsync deals with, so what it shows names people, not only
 * DIDs. The platform's own `@handles` stays read-only: this is moodsync's collection.
 */
export class IdentityStore {
  readonly #docs: Collection<IdentityDoc>
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
    this.#docs = db.collection<IdentityDoc>(COLLECTIONS.identities)
  }

  /** Records each DID's handle; the later of two for one DID wins. */
  async set(entries: readonly { did: string; handle: string; from: IdentityDoc['from'] }[]): Promise<void> {
    if (entries.length === 0) return
    const latest = new Map(entries.map((e) => [e.did, e]))
    const updatedAt = new Date()
    await bulkWrite(this.#db, this.#docs, [...latest.values()].map((e) => ({ updateOne: { filter: { _id: e.did }, update: { $set: { handle: e.handle, from: e.from, updatedAt } }, upsert: true } })))
  }

  /** The known handles of `dids` (those without one are absent). */
  async handlesOf(dids: readonly string[]): Promise<Map<string, string>> {
    if (dids.length === 0) return new Map()
    const docs = await this.#docs.find({ _id: { $in: [...new Set(dids)] } }, { projection: { handle: 1 } }).toArray()
    return new Map(docs.map((d) => [d._id, d.handle]))
  }
}
