import type { Db } from 'mongodb'
import { MOOD_NSID } from '../mood.ts'
import { COLLECTIONS, type BackfillDoc, type UserDoc } from '../store/collections.ts'
import { PdsClient } from '../writer/pds-client.ts'
import { UnknownUserError } from './subjects.ts'

/** The DID of `--user SUB`; a user without an ATProto account has no repo to read. */
export async function didOfUser(db: Db, user: string): Promise<string> {
  const doc = await db.collection<UserDoc>(COLLECTIONS.users).findOne({ _id: user }, { projection: { 'atproto.did': 1 } })
  if (!doc) throw new UnknownUserError(`no platform user ${JSON.stringify(user)}`)
  if (typeof doc.atproto?.did !== 'string') throw new UnknownUserError(`user ${JSON.stringify(user)} has no ATProto account (users.atproto.did)`)
  return doc.atproto.did
}

/** Every platform user's DID. */
export async function didsOfAllUsers(db: Db): Promise<string[]> {
  const users = await db.collection<UserDoc>(COLLECTIONS.users).find({ 'atproto.did': { $type: 'string' } }, { projection: { 'atproto.did': 1 } }).toArray()
  return [...new Set(users.map((u) => u.atproto!.did!))].sort()
}

/** Repos queued by the indexer (gaps, `#sync`) or by an interrupted discovery. */
export async function queuedDids(db: Db): Promise<string[]> {
  const docs = await db.collection<BackfillDoc>(COLLECTIONS.backfill).find({}, { projection: { _id: 1 } }).sort({ _id: 1 }).toArray()
  return docs.map((d) => d._id)
}

/**
 * Every repo a relay knows to hold moods, from `com.atproto.sync.listReposByCollection`, page by
 * page (lazily: the backfill starts on the first page while the rest is listed).
 */
export async function* discoverRepos(relayUrl: string, opts: { fetch?: typeof globalThis.fetch; pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<string> {
  const client = new PdsClient({ url: relayUrl, fetch: opts.fetch, timeoutMs: 30_000 })
  const seen = new Set<string>()
  let cursor: string | undefined
  do {
    if (opts.signal?.aborted) return
    const page = await client.call<{ repos?: { did?: unknown }[]; cursor?: string }>('com.atproto.sync.listReposByCollection', {
      query: { collection: MOOD_NSID, limit: String(opts.pageSize ?? 2000), ...(cursor ? { cursor } : {}) },
    })
    const repos = Array.isArray(page.repos) ? page.repos : []
    for (const repo of repos) {
      if (typeof repo.did !== 'string' || !repo.did.startsWith('did:') || seen.has(repo.did)) continue
      seen.add(repo.did)
      yield repo.did
    }
    cursor = repos.length > 0 && typeof page.cursor === 'string' && page.cursor !== '' ? page.cursor : undefined
  } while (cursor)
}
