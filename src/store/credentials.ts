import type { Collection, Db } from 'mongodb'
import { COLLECTIONS, type CredentialDoc, type UserDoc } from './collections.ts'

/**
 * Where PDS passwords are: today's plain-text `users.atproto.password` (read, never rewritten)
 * and moodsync's sealed copies. Values are returned as stored; sealing is the writer's.
 */
export class CredentialRecords {
  readonly #sealed: Collection<CredentialDoc>
  readonly #users: Collection<UserDoc>
  constructor(db: Db) {
    this.#sealed = db.collection<CredentialDoc>(COLLECTIONS.credentials)
    this.#users = db.collection<UserDoc>(COLLECTIONS.users)
  }

  async sealed(user: string): Promise<CredentialDoc | null> {
    return this.#sealed.findOne({ _id: user })
  }

  async putSealed(user: string, did: string, sealedPassword: string): Promise<void> {
    await this.#sealed.updateOne({ _id: user }, { $set: { did, password: sealedPassword, updatedAt: new Date() } }, { upsert: true })
  }

  /** Every sealed password, as stored (for re-sealing under a new key). */
  async *allSealed(): AsyncGenerator<{ user: string; password: string }> {
    for await (const doc of this.#sealed.find({}, { projection: { password: 1 } }).sort({ _id: 1 })) yield { user: doc._id, password: doc.password }
  }

  /**
   * Replaces one sealed password with the same password sealed under another key, only if it is
   * still the value read: a writer sealing a new password meanwhile is never overwritten.
   */
  async resealIf(user: string, from: string, to: string): Promise<boolean> {
    return (await this.#sealed.updateOne({ _id: user, password: from }, { $set: { password: to, updatedAt: new Date() } })).matchedCount === 1
  }

  /** The plain-text password the platform stores today, with its DID. */
  async plain(user: string): Promise<{ did: string; password: string } | null> {
    const doc = await this.#users.findOne({ _id: user }, { projection: { atproto: 1 } })
    const { did, password } = doc?.atproto ?? {}
    return typeof did === 'string' && typeof password === 'string' ? { did, password } : null
  }

  /** Every user with their DID and plain-text password (either may be absent). */
  async *allPlain(): AsyncGenerator<{ user: string; did?: string; password?: string }> {
    for await (const user of this.#users.find({}, { projection: { atproto: 1 } })) {
      const { did, password } = user.atproto ?? {}
      yield { user: user._id, ...(typeof did === 'string' ? { did } : {}), ...(typeof password === 'string' ? { password } : {}) }
    }
  }
}
