import type { Db } from 'mongodb'
import { COLLECTIONS, type UserDoc } from '../store/collections.ts'

/**
 * DID -> platform user (`users._id`), read from `users.atproto.did` (never the password),
 * cached so the hot path does one query per batch for DIDs it has not seen lately.
 */
export class UserDirectory {
  readonly #db: Db
  readonly #ttlMs: number
  readonly #cache = new Map<string, { user: string | null; until: number }>()

  readonly #maxEntries: number

  constructor(db: Db, opts: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#db = db
    this.#ttlMs = opts.ttlMs ?? 5 * 60_000
    this.#maxEntries = opts.maxEntries ?? 10_000
  }

  async resolve(dids: Iterable<string>): Promise<Map<string, string | null>> {
    const now = Date.now()
    const result = new Map<string, string | null>()
    const missing: string[] = []
    for (const did of new Set(dids)) {
      const hit = this.#cache.get(did)
      if (hit && hit.until > now) result.set(did, hit.user)
      else missing.push(did)
    }
    if (missing.length > 0) {
      const found = await this.#db
        .collection<UserDoc>(COLLECTIONS.users)
        .find({ 'atproto.did': { $in: missing } }, { projection: { _id: 1, 'atproto.did': 1 } })
        .toArray()
      const byDid = new Map(found.map((u) => [u.atproto?.did, u._id]))
      for (const did of missing) {
        const user = byDid.get(did) ?? null
        // Any account can publish a mood: bound the cache (a Map iterates oldest first).
        this.#cache.delete(did)
        if (this.#cache.size >= this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!)
        this.#cache.set(did, { user, until: now + this.#ttlMs })
        result.set(did, user)
      }
    }
    return result
  }

  /** An identity event: whatever we cached about the DID may be stale. */
  invalidate(did: string): void {
    this.#cache.delete(did)
  }
}
