import { ObjectId, type AnyBulkWriteOperation, type Collection, type Db, type Filter } from 'mongodb'
import type { Mood } from '../mood.ts'
import { StoreError } from '../errors.ts'
import { COLLECTIONS, type MoodDoc, type RepoStateDoc } from './collections.ts'
import { bulkWriteChunked } from './bulk.ts'
import { isDuplicateKey } from './mongo-errors.ts'

/** A record's state at a repo revision: create and update alike. */
export interface UpsertOp {
  kind: 'upsert'
  did: string
  rkey: string
  rev: string
  cid: string
  mood: Mood
  /** The platform user owning `did`, or null for a DID that is not a platform user's. */
  user: string | null
}

export interface DeleteOp {
  kind: 'delete'
  did: string
  rkey: string
  rev: string
}

export type MoodOp = UpsertOp | DeleteOp

export interface ApplyResult {
  inserted: number
  updated: number
  /** Documents claimed through `ref` (written MongoDB-first, now confirmed by their record). */
  attached: number
  deleted: number
  unchanged: number
  /** Ops older than the state already stored: skipped, so replays never roll a mood back. */
  stale: number
  /** Writes of ours that the network echoed back: the outbox entry is now confirmed. */
  confirmed: number
  /** Ops for a mood with a local change not yet written: the local change is newer. */
  pending: number
}

const MAX_ATTEMPTS = 5

/**
 * The `moods` collection. Every write is computed from the current documents and guarded on
 * what was read, so applying the same ops twice changes nothing and an older op never
 * overwrites a newer one. Correct on MongoDB and on FerretDB (no transactions needed).
 */
export class MoodStore {
  readonly collection: Collection<MoodDoc>
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
    this.collection = db.collection<MoodDoc>(COLLECTIONS.moods)
  }

  /**
   * Documents of one repo. The rkey clause changes nothing (a document with a DID always has
   * an rkey) but lets MongoDB use the partial (DID, rkey) index instead of scanning.
   */
  static byDid(did: string): Filter<MoodDoc> {
    return { 'atproto.did': did, 'atproto.rkey': { $exists: true } }
  }

  async get(did: string, rkey: string): Promise<MoodDoc | null> {
    return this.collection.findOne({ 'atproto.did': did, 'atproto.rkey': rkey })
  }

  async listByDid(did: string, opts: { includeDeleted?: boolean } = {}): Promise<MoodDoc[]> {
    const filter: Filter<MoodDoc> = MoodStore.byDid(did)
    if (!opts.includeDeleted) filter.deleted = { $ne: true }
    return this.collection.find(filter).sort({ 'atproto.rkey': 1 }).toArray()
  }

  /** Hides a DID's live moods (account deactivated, taken down, suspended), keeping them. */
  async hideDid(did: string, status: string): Promise<number> {
    const res = await this.collection.updateMany(
      { ...MoodStore.byDid(did), deleted: { $ne: true } },
      { $set: { deleted: true, 'atproto.hidden': status } },
    )
    // The rev a backfill reached no longer describes MongoDB: the next one must read the repo
    // (and restore), even if the account comes back without a new commit.
    await this.#db.collection<RepoStateDoc>(COLLECTIONS.repos).deleteOne({ _id: did })
    return res.modifiedCount
  }

  /** Brings back what hideDid hid; moods deleted meanwhile stay deleted. */
  async restoreDid(did: string): Promise<number> {
    const res = await this.collection.updateMany({ ...MoodStore.byDid(did), 'atproto.hidden': { $exists: true } }, { $unset: { deleted: '', 'atproto.hidden': '' } })
    return res.modifiedCount
  }

  /** The account is gone: every mood of the DID is soft-deleted for good. */
  async deleteDid(did: string): Promise<number> {
    const live = await this.collection.updateMany({ ...MoodStore.byDid(did), deleted: { $ne: true } }, { $set: { deleted: true } })
    const hidden = await this.collection.updateMany({ ...MoodStore.byDid(did), 'atproto.hidden': { $exists: true } }, { $unset: { 'atproto.hidden': '' } })
    return live.modifiedCount + hidden.modifiedCount
  }

  /**
   * Applies a batch idempotently. Ops for the same record collapse to the newest; a write that
   * loses a race with another writer (guard miss, duplicate key) makes the batch recompute.
   */
  async apply(ops: readonly MoodOp[], opts: { insertFirst?: boolean; known?: readonly MoodDoc[] } = {}): Promise<ApplyResult> {
    const latest = collapse(ops)
    // A caller that knows the records exist (a repo read again) skips the doomed insert.
    const inserted = opts.insertFirst === false ? { ops: new Set<MoodOp>(), all: false, amid: 0 } : await this.#insertNew(latest)
    const rest = inserted.all ? [] : latest.filter((op) => !inserted.ops.has(op))
    for (let attempt = 1; ; attempt++) {
      // A caller that just read the documents (a repo read) saves the lookup, once: a retry
      // after a lost race always reads afresh.
      const plan = await this.#plan(rest, attempt === 1 ? opts.known : undefined)
      plan.result.inserted += inserted.ops.size + inserted.amid
      // Inserted amid refusals, those were then read back as they are: unchanged, by the plan.
      plan.result.unchanged -= inserted.amid
      if (plan.writes.length === 0) return plan.result
      try {
        const res = await bulkWriteChunked(this.collection, plan.writes)
        if (res.matchedCount === plan.updates) return plan.result
      } catch (err) {
        if (!isDuplicateKey(err)) throw new StoreError('applying a batch of moods failed', { cause: err })
      }
      if (attempt >= MAX_ATTEMPTS) {
        throw new StoreError(`applying a batch of moods kept racing with another writer (${attempt} attempts)`)
      }
    }
  }

  /**
   * The common case first: a record seen for the first time. Inserting it outright lets the
   * unique (DID, rkey) index say whether it is new, saving a lookup round trip; it can only
   * succeed exactly where the read-then-write path would insert. Anything the index refuses
   * (a replay, an update, a writer's pending mood) goes through that path. After any refusal
   * the whole batch does, since a server may stop at the first error without saying so.
   */
  async #insertNew(ops: readonly MoodOp[]): Promise<{ ops: Set<MoodOp>; all: boolean; amid: number }> {
    const fresh = ops.filter((op): op is UpsertOp => op.kind === 'upsert' && op.mood.ref === undefined)
    if (fresh.length === 0) return { ops: new Set(), all: false, amid: 0 }
    try {
      await this.collection.insertMany(fresh.map(newDoc), { ordered: false })
      return { ops: new Set(fresh), all: fresh.length === ops.length, amid: 0 }
    } catch (err) {
      if (!isDuplicateKey(err)) throw new StoreError('applying a batch of moods failed', { cause: err })
      // The server's own count of the documents it did insert, for the report only.
      const amid = (err as { insertedCount?: unknown }).insertedCount
      return { ops: new Set(), all: false, amid: typeof amid === 'number' ? amid : 0 }
    }
  }

  async #plan(ops: readonly MoodOp[], known?: readonly MoodDoc[]) {
    const result: ApplyResult = { inserted: 0, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0, confirmed: 0, pending: 0 }
    const writes: AnyBulkWriteOperation<MoodDoc>[] = []
    let updates = 0
    if (ops.length === 0) return { result, writes, updates }

    const existing = known ? byKey(known) : await this.#findExisting(ops)
    const refTargets = await this.#findRefTargets(ops.filter((op) => op.kind === 'upsert' && !existing.has(keyOf(op))) as UpsertOp[])
    // Two records naming the same document (a duplicate left by an interrupted migration):
    // the first in the batch (in a repo read, the oldest TID) claims it; the others stay apart.
    const claimed = new Set<string>()

    for (const op of ops) {
      const doc = existing.get(keyOf(op))
      const storedRev = doc?.atproto?.rev
      if (storedRev !== undefined && storedRev > op.rev) {
        result.stale++
        continue
      }
      const state = doc?.atproto?.state
      const echo = doc !== undefined && isEcho(doc, op)
      if (state === 'pending' && !echo) {
        result.pending++
        continue
      }
      if (op.kind === 'delete') {
        if (!doc || (doc.deleted && storedRev === op.rev && !echo)) {
          result.unchanged++
          continue
        }
        writes.push({
          updateOne: {
            filter: guard(doc),
            update: { $set: { deleted: true, 'atproto.rev': op.rev, ...(state ? CONFIRMED : {}) }, $unset: { 'atproto.hidden': '', ...OUTBOX_FIELDS } },
          },
        })
        updates++
        if (echo) result.confirmed++
        else result.deleted++
        continue
      }
      if (doc) {
        const user = op.user ?? doc.user
        const hidden = doc.atproto?.hidden !== undefined
        // The same version seen again, at this rev or a later one (a repo read): rewriting the
        // rev alone would cost a write per record on every read. What a newer rev could still
        // order is a delete from before a re-creation under the same TID, which clients never do.
        if (!echo && (!doc.deleted || hidden) && doc.atproto?.cid === op.cid && sameContent(doc, op.mood, user)) {
          result.unchanged++
          continue
        }
        writes.push({ updateOne: { filter: guard(doc), update: upsertUpdate(op, user, hidden, state !== undefined) } })
        updates++
        if (echo) result.confirmed++
        else result.updated++
        continue
      }
      const target = op.mood.ref === undefined ? undefined : refTargets.get(op.mood.ref)
      if (target && !claimed.has(op.mood.ref!) && canAttach(target, op)) {
        claimed.add(op.mood.ref!)
        writes.push({ updateOne: { filter: guard(target), update: upsertUpdate(op, op.user ?? target.user, false, target.atproto?.state !== undefined) } })
        updates++
        result.attached++
        continue
      }
      writes.push({ insertOne: { document: newDoc(op) } })
      result.inserted++
    }
    return { result, writes, updates }
  }

  async #findExisting(ops: readonly MoodOp[]): Promise<Map<string, MoodDoc>> {
    const dids = [...new Set(ops.map((op) => op.did))]
    const rkeys = [...new Set(ops.map((op) => op.rkey))]
    // A superset query ($in on each field) is cheaper than one $or clause per record.
    return byKey(await this.collection.find({ 'atproto.did': { $in: dids }, 'atproto.rkey': { $in: rkeys } }).toArray())
  }

  async #findRefTargets(ops: readonly UpsertOp[]): Promise<Map<string, MoodDoc>> {
    const ids = ops.map((op) => op.mood.ref).filter((ref): ref is string => ref !== undefined && ObjectId.isValid(ref) && /^[0-9a-f]{24}$/i.test(ref))
    if (ids.length === 0) return new Map()
    const docs = await this.collection.find({ _id: { $in: ids.map((id) => new ObjectId(id)) } }).toArray()
    return new Map(docs.map((doc) => [doc._id.toHexString(), doc]))
  }
}

function newDoc(op: UpsertOp): MoodDoc {
  return { _id: new ObjectId(), user: op.user, mood: op.mood.mood, when: op.mood.when, atproto: { did: op.did, rkey: op.rkey, cid: op.cid, rev: op.rev } }
}

function byKey(docs: readonly MoodDoc[]): Map<string, MoodDoc> {
  const map = new Map<string, MoodDoc>()
  for (const doc of docs) {
    if (doc.atproto?.did) map.set(`${doc.atproto.did}\u0000${doc.atproto.rkey}`, doc)
  }
  return map
}

function keyOf(op: { did: string; rkey: string }): string {
  return `${op.did}\u0000${op.rkey}`
}

/** Keeps, per record, the op with the greatest rev; among equal revs the later one. */
function collapse(ops: readonly MoodOp[]): MoodOp[] {
  const byKey = new Map<string, MoodOp>()
  for (const op of ops) {
    const prev = byKey.get(keyOf(op))
    if (!prev || op.rev >= prev.rev) byKey.set(keyOf(op), op)
  }
  return [...byKey.values()]
}

/** Matches the document only as it was read, so a concurrent change makes the write miss. */
function guard(doc: MoodDoc): Filter<MoodDoc> {
  const rev = doc.atproto?.rev
  const version = doc.atproto?.version
  // The writer's local changes (edit, delete) keep the rev but bump the version: without it an
  // echo planned just before an edit would overwrite the edit, and the edit would never be sent.
  return {
    _id: doc._id,
    'atproto.rev': rev === undefined ? { $exists: false } : rev,
    'atproto.version': version === undefined ? { $exists: false } : version,
  }
}

const CONFIRMED = { 'atproto.state': 'confirmed' as const }
/** The writer's retry bookkeeping, dropped once the network shows the record. */
const OUTBOX_FIELDS = { 'atproto.op': '', 'atproto.swap': '', 'atproto.attempts': '', 'atproto.nextAttemptAt': '', 'atproto.error': '', 'atproto.uncertain': '' } as const

/**
 * The network shows a change of ours: the record with the CID the writer computed, or the
 * delete it asked for. Either confirms the outbox entry (written or still marked pending).
 */
function isEcho(doc: MoodDoc, op: MoodOp): boolean {
  const at = doc.atproto
  if (at?.state !== 'pending' && at?.state !== 'written') return false
  return op.kind === 'delete' ? at.op === 'delete' : at.op !== 'delete' && at.cid === op.cid
}

/**
 * The new state of a record. A mood of a hidden account stays hidden until it is restored;
 * one the writer tracks (`tracked`) is marked confirmed and loses its retry bookkeeping.
 */
function upsertUpdate(op: UpsertOp, user: string | null, hidden: boolean, tracked: boolean) {
  const outbox = tracked ? { set: CONFIRMED, unset: OUTBOX_FIELDS } : { set: {}, unset: {} }
  if (hidden) {
    return { $set: { user, mood: op.mood.mood, when: op.mood.when, 'atproto.cid': op.cid, 'atproto.rev': op.rev, ...outbox.set }, ...(tracked ? { $unset: outbox.unset } : {}) }
  }
  return {
    $set: {
      user,
      mood: op.mood.mood,
      when: op.mood.when,
      'atproto.did': op.did,
      'atproto.rkey': op.rkey,
      'atproto.cid': op.cid,
      'atproto.rev': op.rev,
      ...outbox.set,
    },
    $unset: { deleted: '' as const, ...outbox.unset },
  }
}

function sameContent(doc: MoodDoc, mood: Mood, user: string | null): boolean {
  return doc.mood === mood.mood && doc.when instanceof Date && doc.when.getTime() === mood.when.getTime() && doc.user === user
}

/**
 * A record may claim the document its `ref` names only when that document is not already
 * another record's, and belongs to the same user: a client cannot hijack someone's mood.
 */
function canAttach(target: MoodDoc, op: UpsertOp): boolean {
  const at = target.atproto
  if (at?.did !== undefined && (at.did !== op.did || at.rkey !== op.rkey)) return false
  if (at?.did === undefined && at?.rkey !== undefined && at.rkey !== op.rkey) return false
  return target.user === null ? at?.did === op.did : target.user === op.user
}
