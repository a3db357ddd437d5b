import type { Db } from 'mongodb'
import { COLLECTIONS, type UserDoc } from '../store/collections.ts'
import type { SecretBox } from './secret-box.ts'

export interface Credential {
  did: string
  password: string
}

interface CredentialDoc {
  _id: string
  did: string
  /** Sealed with SecretBox. */
  password: string
  updatedAt: Date
}

/**
 * The PDS account password of a platform user: from moodsync's encrypted store when present,
 * else from today's plain-text `users.atproto.password`. Values never leave this module except
 * to the session manager; nothing here logs.
 */
export class CredentialStore {
  readonly #db: Db
  readonly #box?: SecretBox

  constructor(db: Db, box?: SecretBox) {
    this.#db = db
    this.#box = box
  }

  /** The user's DID, whether or not a password is known (null: no ATProto account). */
  async didOf(user: string): Promise<string | null> {
    const doc = await this.#db.collection<UserDoc>(COLLECTIONS.users).findOne({ _id: user }, { projection: { 'atproto.did': 1 } })
    return typeof doc?.atproto?.did === 'string' ? doc.atproto.did : null
  }

  async get(user: string): Promise<Credential | null> {
    if (this.#box) {
      const sealed = await this.#db.collection<CredentialDoc>(COLLECTIONS.credentials).findOne({ _id: user })
      if (sealed) return { did: sealed.did, password: this.#box.open(sealed.password) }
    }
    const doc = await this.#db.collection<UserDoc>(COLLECTIONS.users).findOne({ _id: user }, { projection: { atproto: 1 } })
    const { did, password } = doc?.atproto ?? {}
    return typeof did === 'string' && typeof password === 'string' ? { did, password } : null
  }

  /**
   * One-time migration: seals every plain-text password into `moodsync_credentials`, so the
   * platform can then remove `users.atproto.password`. Idempotent: already sealed users whose
   * password did not change are left alone.
   */
  async sealAll(): Promise<{ sealed: number; unchanged: number; withoutPassword: number }> {
    if (!this.#box) throw new Error('sealing credentials needs MOODSYNC_SECRET')
    const result = { sealed: 0, unchanged: 0, withoutPassword: 0 }
    const target = this.#db.collection<CredentialDoc>(COLLECTIONS.credentials)
    for await (const user of this.#db.collection<UserDoc>(COLLECTIONS.users).find({}, { projection: { atproto: 1 } })) {
      const { did, password } = user.atproto ?? {}
      if (typeof did !== 'string' || typeof password !== 'string') {
        result.withoutPassword++
        continue
      }
      const existing = await target.findOne({ _id: user._id })
      if (existing && existing.did === did && this.#box.open(existing.password) === password) {
        result.unchanged++
        continue
      }
      await target.updateOne({ _id: user._id }, { $set: { did, password: this.#box.seal(password), updatedAt: new Date() } }, { upsert: true })
      result.sealed++
    }
    return result
  }
}
