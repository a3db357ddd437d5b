import type { Db } from 'mongodb'
import { MoodsyncError } from '../errors.ts'
import { COLLECTIONS, type MoodDoc, type UserDoc } from './collections.ts'

/** Whose moods are compared: a platform user (with or without an account) or a DID no user owns. */
export interface Subject {
  user: string | null
  did: string | null
}

const DID_TTL_MS = 60_000

/** `--user SUB` names nobody the platform knows. */
export class UnknownUserError extends MoodsyncError {
  override name = 'UnknownUserError'
}

/**
 * The platform's `users` (read only, never the password here): DID -> user for the hot path,
 * cached so a batch costs one query for DIDs not seen lately, and user -> DID for commands.
 */
export class UserStore {
  readonly #db: Db
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #cache = new Map<string, { user: string | null; until: number }>()
  readonly #dids = new Map<string, { did: string; until: number }>()

  constructor(db: Db, opts: { ttlMs?: number; maxEntries?: number } = {}) {
    this.#db = db
    this.#ttlMs = opts.ttlMs ?? 5 * 60_000
    this.#maxEntries = opts.maxEntries ?? 10_000
  }

  get #users() {
    return this.#db.collection<UserDoc>(COLLECTIONS.users)
  }

  /** The platform user of each DID (null: a DID that is no user's). */
  async resolve(dids: Iterable<string>): Promise<Map<string, string | null>> {
    const now = Date.now()
    const result = new Map<string, string | null>()
    const missing: string[] = []
    for (const did of new Set(dids)) {
      const hit = this.#cache.get(did)
      if (hit && hit.until > now) result.set(did, hit.user)
      else missing.push(did)
    }
    if (missing.length === 0) return result
    const found = await this.#users.find({ 'atproto.did': { $in: missing } }, { projection: { _id: 1, 'atproto.did': 1 } }).toArray()
    const byDid = new Map(found.map((u) => [u.atproto?.did, u._id]))
    for (const did of missing) {
      const user = byDid.get(did) ?? null
      // Any account can publish a mood: bound the cache (a Map iterates oldest first).
      this.#cache.delete(did)
      if (this.#cache.size >= this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!)
      this.#cache.set(did, { user, until: now + this.#ttlMs })
      result.set(did, user)
    }
    return result
  }

  /** An identity event: whatever we cached about the DID may be stale. */
  invalidate(did: string): void {
    this.#cache.delete(did)
  }

  /**
   * `didOf` for the writer's hot path: a DID once found is kept `DID_TTL_MS`, saving a round
   * trip per post. Only a DID is kept: a user with none, or no user, is asked again each time,
   * so an account linked a moment ago is written to at once. (A DID is permanent; what could
   * change is the platform linking the user to another account, seen within the minute.)
   */
  async didOfCached(user: string): Promise<string | null | undefined> {
    const now = Date.now()
    const hit = this.#dids.get(user)
    if (hit && hit.until > now) return hit.did
    const did = await this.didOf(user)
    this.#dids.delete(user)
    if (typeof did === 'string') {
      if (this.#dids.size >= this.#maxEntries) this.#dids.delete(this.#dids.keys().next().value!)
      this.#dids.set(user, { did, until: now + DID_TTL_MS })
    }
    return did
  }

  /** The user's DID (null: no ATProto account); undefined when there is no such user. */
  async didOf(user: string): Promise<string | null | undefined> {
    const doc = await this.#users.findOne({ _id: user }, { projection: { 'atproto.did': 1 } })
    if (!doc) return undefined
    return typeof doc.atproto?.did === 'string' ? doc.atproto.did : null
  }

  /** The DID of `--user SUB`; a user without an ATProto account has no repo to read. */
  async requireDid(user: string): Promise<string> {
    const did = await this.didOf(user)
    if (did === undefined) throw new UnknownUserError(`no platform user ${JSON.stringify(user)}`)
    if (did === null) throw new UnknownUserError(`user ${JSON.stringify(user)} has no ATProto account (users.atproto.did)`)
    return did
  }

  /** Every platform user's DID, sorted. */
  async allDids(): Promise<string[]> {
    const users = await this.#users.find({ 'atproto.did': { $type: 'string' } }, { projection: { 'atproto.did': 1 } }).toArray()
    return [...new Set(users.map((u) => u.atproto!.did!))].sort()
  }

  /** One user, as `--user SUB` names them: known to `users`, or at least the author of moods. */
  async subjectOf(user: string): Promise<Subject> {
    const did = await this.didOf(user)
    if (did === undefined) {
      const moods = await this.#db.collection<MoodDoc>(COLLECTIONS.moods).countDocuments({ user }, { limit: 1 })
      if (moods === 0) throw new UnknownUserError(`no platform user ${JSON.stringify(user)} (not in users, no moods)`)
    }
    return { user, did: did ?? null }
  }

  /**
   * Everyone with moods on either side: users with an account, users with moods but no account,
   * and DIDs with moods that belong to no user (posted from other clients).
   */
  async allSubjects(): Promise<Subject[]> {
    const subjects: Subject[] = []
    const withDid = new Set<string>()
    for await (const user of this.#users.find({ 'atproto.did': { $type: 'string' } }, { projection: { 'atproto.did': 1 } }).sort({ _id: 1 })) {
      subjects.push({ user: user._id, did: user.atproto!.did! })
      withDid.add(user._id)
    }
    const moods = this.#db.collection<MoodDoc>(COLLECTIONS.moods)
    const users = (await moods.distinct('user', { user: { $type: 'string' } })) as string[]
    for (const user of users.sort()) if (!withDid.has(user)) subjects.push({ user, did: null })
    const ownedDids = new Set(subjects.map((s) => s.did))
    const dids = (await moods.distinct('atproto.did', { user: null })) as unknown[]
    for (const did of dids.filter((d): d is string => typeof d === 'string').sort()) if (!ownedDids.has(did)) subjects.push({ user: null, did })
    return subjects
  }
}
