import { MoodsyncError, WrongSecretError } from '../errors.ts'
import type { Database } from '../store/database.ts'
import type { SecretBox } from './secret-box.ts'

export interface Credential {
  did: string
  password: string
}

/**
 * The PDS account password of a platform user: from moodsync's encrypted store when present,
 * else from today's plain-text `users.atproto.password`. Values never leave this module except
 * to the session manager; nothing here logs.
 */
export class CredentialStore {
  readonly #store: Database
  readonly #box?: SecretBox

  constructor(store: Database, box?: SecretBox) {
    this.#store = store
    this.#box = box
  }

  /**
   * A sealed password that no key of ours opens is an error (WrongSecretError), not a reason
   * to fall back to the plain-text copy: a wrong key must be noticed where it is configured.
   */
  async get(user: string): Promise<Credential | null> {
    if (this.#box) {
      const sealed = await this.#store.credentials.sealed(user)
      if (sealed) return { did: sealed.did, password: this.#open(user, sealed.password) }
    }
    return this.#store.credentials.plain(user)
  }

  /**
   * One-time migration: seals every plain-text password into `moodsync_credentials`, so the
   * platform can then remove `users.atproto.password`. Idempotent: already sealed users whose
   * password did not change are left alone.
   */
  async sealAll(): Promise<{ sealed: number; unchanged: number; withoutPassword: number }> {
    if (!this.#box) throw new MoodsyncError('sealing credentials needs MOODSYNC_SECRET')
    const result = { sealed: 0, unchanged: 0, withoutPassword: 0 }
    for await (const { user, did, password } of this.#store.credentials.allPlain()) {
      if (did === undefined || password === undefined) {
        result.withoutPassword++
        continue
      }
      const existing = await this.#store.credentials.sealed(user)
      if (existing && existing.did === did && this.#open(user, existing.password) === password) {
        result.unchanged++
        continue
      }
      await this.#store.credentials.putSealed(user, did, this.#box.seal(password))
      result.sealed++
    }
    return result
  }

  #open(user: string, sealed: string): string {
    try {
      return this.#box!.open(sealed)
    } catch (err) {
      throw new WrongSecretError(`the stored ATProto password of ${user} cannot be decrypted with MOODSYNC_SECRET (nor MOODSYNC_SECRET_PREVIOUS): this process has a different key than the one that sealed it`, { cause: err })
    }
  }
}
