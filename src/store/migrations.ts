import type { Db } from 'mongodb'
import type { Logger } from '../logger.ts'
import { isDuplicateKey } from './mongo-errors.ts'
import { COLLECTIONS, type MigrationDoc, type MoodDoc, type UserDoc } from './collections.ts'

export interface FillDidsResult {
  /** Legacy documents that now carry their repo DID. */
  filled: number
  /** Legacy documents whose user has no ATProto DID in `users`: left as they are. */
  noDid: number
  /** Legacy documents whose (DID, rkey) another document holds already: left, for `dedupe`. */
  conflicts: number
}

/**
 * Today's documents carry only `atproto.rkey`; the indexer keys by (DID, rkey). This fills
 * `atproto.did` from `users.atproto.did`, touching no other field. Safe to run any number of
 * times: a filled document no longer matches, and each write is guarded on the DID's absence.
 */
export async function fillDids(db: Db, log?: Logger): Promise<FillDidsResult> {
  const moods = db.collection<MoodDoc>(COLLECTIONS.moods)
  const users = db.collection<UserDoc>(COLLECTIONS.users)
  const result: FillDidsResult = { filled: 0, noDid: 0, conflicts: 0 }
  const legacy = { 'atproto.rkey': { $exists: true }, 'atproto.did': { $exists: false } } as const

  const subs = (await moods.distinct('user', legacy)).filter((u): u is string => typeof u === 'string')
  const dids = new Map<string, string>()
  for (const user of await users.find({ _id: { $in: subs } }, { projection: { 'atproto.did': 1 } }).toArray()) {
    if (typeof user.atproto?.did === 'string') dids.set(user._id, user.atproto.did)
  }

  for await (const doc of moods.find(legacy, { projection: { _id: 1, user: 1 } })) {
    const did = doc.user === null ? undefined : dids.get(doc.user)
    if (did === undefined) {
      result.noDid++
      continue
    }
    try {
      const res = await moods.updateOne({ _id: doc._id, 'atproto.did': { $exists: false } }, { $set: { 'atproto.did': did } })
      result.filled += res.modifiedCount
    } catch (err) {
      if (!isDuplicateKey(err)) throw err
      result.conflicts++
      log?.warn({ id: doc._id.toHexString(), did }, 'legacy mood duplicates an rkey already indexed; left for dedupe')
    }
  }
  return result
}

/** Runs the storage migrations and records each run in `moodsync_migrations`. */
export async function migrateStorage(db: Db, log?: Logger): Promise<{ fillDids: FillDidsResult }> {
  const fill = await fillDids(db, log)
  const record = () => db.collection<MigrationDoc>(COLLECTIONS.migrations).updateOne({ _id: 'fill-dids' }, { $set: { appliedAt: new Date(), result: { ...fill } } }, { upsert: true })
  // Two processes starting at once (a second replica, a rolling deploy) can both try to insert
  // the record; the one refused finds it there when it tries again.
  await record().catch((err) => (isDuplicateKey(err) ? record() : Promise.reject(err)))
  if (fill.filled > 0 || fill.conflicts > 0) log?.info({ ...fill }, 'filled DIDs into legacy moods')
  return { fillDids: fill }
}
