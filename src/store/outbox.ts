import { ObjectId, type Collection, type Db, type Filter } from 'mongodb'
import { COLLECTIONS, type AtprotoState, type MoodDoc } from './collections.ts'

export type OutboxState = NonNullable<AtprotoState['state']>

/** A change of the writer's own, for the PDS: a put (create or edit) or a delete. */
export interface PendingChange {
  did: string
  rkey: string
  cid?: string
  op: 'put' | 'delete'
  version: number
  swap?: string
}

export interface OutboxStats {
  pending: number
  failed: number
  /** Written, but not seen back from the network for longer than the cutoff. */
  unconfirmed: number
}

/** The writer's retry bookkeeping, dropped once a change is written. */
const RETRY_FIELDS = { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.uncertain': '', 'atproto.swap': '', 'atproto.attempts': '' } as const

/**
 * The writer's outbox: moods whose change (`atproto.state: pending`) is still to be written to
 * the PDS, and every state change of it. Each transition is guarded on the state and version
 * read, so a slow write never marks a newer change written and an echo may come first.
 */
export class OutboxStore {
  readonly #moods: Collection<MoodDoc>
  constructor(db: Db) {
    this.#moods = db.collection<MoodDoc>(COLLECTIONS.moods)
  }

  /** A new mood, MongoDB first: from here on it cannot be lost. */
  async insert(doc: MoodDoc): Promise<void> {
    await this.#moods.insertOne(doc)
  }

  async get(_id: ObjectId): Promise<MoodDoc | null> {
    return this.#moods.findOne({ _id })
  }

  /** One of the user's moods, by MongoDB id or rkey. */
  async find(user: string, id: string): Promise<MoodDoc | null> {
    const filter: Filter<MoodDoc> = /^[0-9a-f]{24}$/i.test(id) ? { _id: new ObjectId(id), user } : { 'atproto.rkey': id, user }
    return this.#moods.findOne(filter)
  }

  /** An edit, guarded on the record version the caller read; false when it changed meanwhile. */
  async queueEdit(doc: MoodDoc, change: { mood: string; cid: string; version: number; swap?: string }): Promise<boolean> {
    const res = await this.#moods.updateOne(
      { _id: doc._id, 'atproto.cid': doc.atproto?.cid, deleted: { $ne: true } },
      {
        $set: { mood: change.mood, 'atproto.cid': change.cid, 'atproto.state': 'pending', 'atproto.op': 'put', 'atproto.version': change.version, 'atproto.attempts': 0, ...(change.swap ? { 'atproto.swap': change.swap } : {}) },
        $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' },
      },
    )
    return res.matchedCount === 1
  }

  /** A delete: hidden from the platform at once, the record's delete queued. */
  async queueDelete(doc: MoodDoc): Promise<void> {
    await this.#moods.updateOne(
      { _id: doc._id },
      {
        $set: { deleted: true, 'atproto.state': 'pending', 'atproto.op': 'delete', 'atproto.version': (doc.atproto?.version ?? 0) + 1, 'atproto.attempts': 0 },
        $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.swap': '' },
      },
    )
  }

  /** A mood with no record to delete: the soft delete is all there is. */
  async softDelete(_id: ObjectId): Promise<void> {
    await this.#moods.updateOne({ _id }, { $set: { deleted: true } })
  }

  /**
   * A mood that never had a record gets its rkey and CID and joins the outbox. Guarded on the
   * rkey's absence, so adopting it again (or concurrently) never queues it twice.
   */
  async adopt(doc: MoodDoc, change: { did: string; rkey: string; cid: string }): Promise<boolean> {
    const res = await this.#moods.updateOne(unlinked(doc._id), {
      $set: { 'atproto.did': change.did, 'atproto.rkey': change.rkey, 'atproto.cid': change.cid, 'atproto.state': 'pending', 'atproto.op': 'put', 'atproto.version': (doc.atproto?.version ?? 0) + 1, 'atproto.attempts': 0 },
      $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' },
    })
    return res.modifiedCount === 1
  }

  /** A mood that never had a record and never can as it is (the lexicon refuses it). */
  async refuseUnlinked(_id: ObjectId, reason: string): Promise<void> {
    await this.#moods.updateOne(unlinked(_id), { $set: { 'atproto.state': 'failed', 'atproto.error': reason } })
  }

  /** Failed or waiting changes become due now. */
  async requeue(ids: readonly ObjectId[]): Promise<number> {
    if (ids.length === 0) return 0
    const res = await this.#moods.updateMany(
      { _id: { $in: [...ids] }, 'atproto.state': { $in: ['failed', 'pending'] }, 'atproto.rkey': { $exists: true } },
      { $set: { 'atproto.state': 'pending', 'atproto.attempts': 0 }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' } },
    )
    return res.modifiedCount
  }

  /** Pending changes due by `now` (one user's, when given), the longest waiting first. */
  async due(opts: { now: Date; limit: number; user?: string }): Promise<MoodDoc[]> {
    return this.#moods
      .find({ 'atproto.state': 'pending', ...(opts.user === undefined ? {} : { user: opts.user }), $or: [{ 'atproto.nextAttemptAt': { $exists: false } }, { 'atproto.nextAttemptAt': { $lte: opts.now } }] })
      .sort({ 'atproto.nextAttemptAt': 1, _id: 1 })
      .limit(opts.limit)
      .toArray()
  }

  /**
   * The PDS accepted these changes (all of one version): marked written with the commit's rev.
   * Returns the ids marked; the others were confirmed by their echo first or changed again.
   */
  async markWritten(ids: readonly ObjectId[], version: number | undefined, rev: string | undefined): Promise<Set<string>> {
    const writtenAt = new Date()
    const res = await this.#moods.updateMany(
      { _id: { $in: [...ids] }, 'atproto.state': 'pending', 'atproto.version': version },
      { $set: { 'atproto.state': 'written', 'atproto.writtenAt': writtenAt, ...(rev ? { 'atproto.rev': rev } : {}) }, $unset: RETRY_FIELDS },
    )
    if (res.modifiedCount === ids.length) return new Set(ids.map((id) => id.toHexString()))
    if (res.modifiedCount === 0) return new Set()
    const marked = await this.#moods.find({ _id: { $in: [...ids] }, 'atproto.state': 'written', 'atproto.writtenAt': writtenAt }, { projection: { _id: 1 } }).toArray()
    return new Set(marked.map((d) => d._id.toHexString()))
  }

  /** Not now: try again after `delayMs`; `uncertain` when the answer was lost (it may be written). */
  async defer(doc: MoodDoc, delayMs: number, reason: string, uncertain: boolean): Promise<void> {
    await this.#moods.updateOne(stillPending(doc), {
      $set: { 'atproto.nextAttemptAt': new Date(Date.now() + Math.max(0, delayMs)), 'atproto.error': reason, ...(uncertain ? { 'atproto.uncertain': true as const } : {}) },
      $inc: { 'atproto.attempts': 1 },
    })
  }

  /** Refused for good: kept, marked failed with the reason, never retried by itself. */
  async fail(doc: MoodDoc, reason: string): Promise<void> {
    await this.#moods.updateOne(stillPending(doc), { $set: { 'atproto.state': 'failed', 'atproto.error': reason }, $unset: { 'atproto.nextAttemptAt': '' } })
  }

  /** Milliseconds until the next pending change is due, or undefined when none is pending. */
  async nextDueInMs(): Promise<number | undefined> {
    const next = await this.#moods.find({ 'atproto.state': 'pending' }, { projection: { 'atproto.nextAttemptAt': 1 } }).sort({ 'atproto.nextAttemptAt': 1 }).limit(1).next()
    if (!next) return undefined
    return Math.max(0, (next.atproto?.nextAttemptAt?.getTime() ?? 0) - Date.now())
  }

  /** The outbox at a glance, for metrics: what waits, what failed, what the network never echoed. */
  async stats(unconfirmedAfterMs = 5 * 60_000): Promise<OutboxStats> {
    const [pending, failed, unconfirmed] = await Promise.all([
      this.#moods.countDocuments({ 'atproto.state': 'pending' }),
      this.#moods.countDocuments({ 'atproto.state': 'failed' }),
      this.#moods.countDocuments({ 'atproto.state': 'written', 'atproto.writtenAt': { $lt: new Date(Date.now() - unconfirmedAfterMs) } }),
    ])
    return { pending, failed, unconfirmed }
  }

  /** A user's live moods with just their outbox fields, for a sync summary. */
  async statesOf(user: string): Promise<Pick<MoodDoc, '_id' | 'atproto'>[]> {
    return this.#moods.find({ user, deleted: { $ne: true } }, { projection: { 'atproto.state': 1, 'atproto.writtenAt': 1, 'atproto.rkey': 1 } }).toArray()
  }

  /** Erasure, step one: every mood of the user (or of the DID) leaves the platform's reads. */
  async hideAllOf(user: string, did: string | null): Promise<void> {
    await this.#moods.updateMany({ ...ownedBy(user, did), deleted: { $ne: true } }, { $set: { deleted: true } })
  }

  /** Erasure, last step: the documents themselves go. */
  async removeAllOf(user: string, did: string | null): Promise<number> {
    return (await this.#moods.deleteMany(ownedBy(user, did))).deletedCount
  }
}

function unlinked(_id: ObjectId): Filter<MoodDoc> {
  return { _id, 'atproto.rkey': { $exists: false }, deleted: { $ne: true } }
}

/** Guarded on the change still pending at its version: an echo may have confirmed it meanwhile. */
function stillPending(doc: MoodDoc): Filter<MoodDoc> {
  return { _id: doc._id, 'atproto.state': 'pending', 'atproto.version': doc.atproto?.version }
}

function ownedBy(user: string, did: string | null): Filter<MoodDoc> {
  return did ? { $or: [{ user }, { 'atproto.did': did }] } : { user }
}
