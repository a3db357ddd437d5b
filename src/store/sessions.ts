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

  async put(user: string, sealedTokens: string): Promise<void> {
    await this.#docs.updateOne({ _id: user }, { $set: { tokens: sealedTokens, updatedAt: new Date() } }, { upsert: true })
  }
}
