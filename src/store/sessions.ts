import type { Collection, Db } from 'mongodb'
import { COLLECTIONS, type SessionDoc } from './collections.ts'

/** PDS sessions, sealed by the writer, so a cold serverless start reuses a warm one's login. */
export class SessionStore {
  readonly #docs: Collection<SessionDoc>
  constructor(db: Db) {
    this.#docs = db.collection<SessionDoc>(COLLECTIONS.sessions)
  }

  async get(user: string): Promise<string | undefined> {
    return (await this.#docs.findOne({ _id: user }))?.tokens
  }

  /** Every sealed session, as stored (for re-sealing under a new key). */
  async *all(): AsyncGenerator<{ user: string; tokens: string }> {
    for await (const doc of this.#docs.find({}, { projection: { tokens: 1 } }).sort({ _id: 1 })) yield { user: doc._id, tokens: doc.tokens }
  }

  /** Compare-and-swap: replaced only if still the value read (a login meanwhile wins). */
  async resealIf(user: string, from: string, to: string): Promise<boolean> {
    return (await this.#docs.updateOne({ _id: user, tokens: from }, { $set: { tokens: to, updatedAt: new Date() } })).matchedCount === 1
  }

  /** A session no key opens is only a cache: dropped (if unchanged), the writer logs in again. */
  async dropIf(user: string, tokens: string): Promise<boolean> {
    return (await this.#docs.deleteOne({ _id: user, tokens })).deletedCount === 1
  }

  async put(user: string, sealedTokens: string): Promise<void> {
    await this.#docs.updateOne({ _id: user }, { $set: { tokens: sealedTokens, updatedAt: new Date() } }, { upsert: true })
  }
}
