import { TID } from '@atproto/common-web'
import type { Db, Filter } from 'mongodb'
import { MoodsyncError } from '../errors.ts'
import { commitToOps } from '../ingest/validate.ts'
import { COLLECTIONS, type ForgottenDoc, type MoodDoc, type UserDoc } from '../store/collections.ts'
import { MoodStore, type UpsertOp } from '../store/moods.ts'
import type { QuarantineEntry } from '../store/quarantine.ts'
import type { RepoSnapshot } from './repo-reader.ts'

/** Whose moods are compared: a platform user (with or without an account) or a DID no user owns. */
export interface Subject {
  user: string | null
  did: string | null
}

export class UnknownUserError extends MoodsyncError {
  override name = 'UnknownUserError'
}

/** One user, as `--user SUB` names them. */
export async function subjectOf(db: Db, user: string): Promise<Subject> {
  const doc = await db.collection<UserDoc>(COLLECTIONS.users).findOne({ _id: user }, { projection: { 'atproto.did': 1 } })
  const moods = doc ? 0 : await db.collection<MoodDoc>(COLLECTIONS.moods).countDocuments({ user }, { limit: 1 })
  if (!doc && moods === 0) throw new UnknownUserError(`no platform user ${JSON.stringify(user)} (not in users, no moods)`)
  return { user, did: typeof doc?.atproto?.did === 'string' ? doc.atproto.did : null }
}

/**
 * Everyone with moods on either side: users with an account, users with moods but no account,
 * and DIDs with moods that belong to no user (posted from other clients).
 */
export async function allSubjects(db: Db): Promise<Subject[]> {
  const subjects: Subject[] = []
  const withDid = new Set<string>()
  for await (const user of db.collection<UserDoc>(COLLECTIONS.users).find({ 'atproto.did': { $type: 'string' } }, { projection: { 'atproto.did': 1 } }).sort({ _id: 1 })) {
    subjects.push({ user: user._id, did: user.atproto!.did! })
    withDid.add(user._id)
  }
  const moods = db.collection<MoodDoc>(COLLECTIONS.moods)
  const users = (await moods.distinct('user', { user: { $type: 'string' } })) as string[]
  for (const user of users.sort()) if (!withDid.has(user)) subjects.push({ user, did: null })
  const ownedDids = new Set(subjects.map((s) => s.did))
  const dids = (await moods.distinct('atproto.did', { user: null })) as unknown[]
  for (const did of dids.filter((d): d is string => typeof d === 'string').sort()) if (!ownedDids.has(did)) subjects.push({ user: null, did })
  return subjects
}

/** The subject's documents, deleted ones included (legacy ones without a DID by their user). */
export async function docsOf(db: Db, subject: Subject): Promise<MoodDoc[]> {
  const clauses: Filter<MoodDoc>[] = []
  if (subject.did !== null) clauses.push(MoodStore.byDid(subject.did))
  if (subject.user !== null) clauses.push(subject.did === null ? { user: subject.user } : { user: subject.user, 'atproto.did': { $exists: false } })
  return db.collection<MoodDoc>(COLLECTIONS.moods).find(clauses.length === 1 ? clauses[0]! : { $or: clauses }).sort({ _id: 1 }).toArray()
}

/**
 * A repo read as store ops: every valid mood an upsert at the repo's rev, every invalid one a
 * quarantine entry. Records older than a `forget` of the repo are left out: erased stays erased.
 */
export function snapshotOps(snapshot: RepoSnapshot, user: string | null, forgottenAtUs?: number): { ops: UpsertOp[]; rejected: QuarantineEntry[] } {
  const records = forgottenAtUs === undefined ? snapshot.records : snapshot.records.filter((r) => tidTimeUs(r.rkey) > forgottenAtUs)
  const event = { did: snapshot.did, rev: snapshot.rev, ops: records.map((r) => ({ action: 'upsert' as const, rkey: r.rkey, cid: r.cid, record: r.value })) }
  const { ops, rejected } = commitToOps(event, user, `repo:${snapshot.via}`)
  return { ops: ops as UpsertOp[], rejected }
}

export async function forgottenAt(db: Db, did: string): Promise<number | undefined> {
  return (await db.collection<ForgottenDoc>(COLLECTIONS.forgotten).findOne({ _id: did }))?.atUs
}

function tidTimeUs(rkey: string): number {
  try {
    return TID.fromStr(rkey).timestamp()
  } catch {
    return Number.POSITIVE_INFINITY
  }
}
