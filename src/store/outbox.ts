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

/** A sender's hold on one pending change (`atproto.claimedBy`, `atproto.claimedUntil`). */
export interface Claim {
  /** Unique to this one claim, so only its holder can renew or release it. */
  token: string
  /** When it lapses if its holder never finishes (a crash): the change is then sent again. */
  until: Date
}

const CLAIM_FIELDS = { 'atproto.claimedBy': '', 'atproto.claimedUntil': '' } as const
/** The writer's retry bookkeeping, dropped once a change is written. */
const RETRY_FIELDS = { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.uncertain': '', 'atproto.swap': '', 'atproto.attempts': '', ...CLAIM_FIELDS } as const

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

  /** A new mood, MongoDB first: from here on it cannot be lost (inserted claimed when it is sent at once). */
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
      $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.refused': '' },
    })
    return res.modifiedCount === 1
  }

  /** A mood that never had a record and never can as it is (the lexicon refuses it). */
  async refuseUnlinked(_id: ObjectId, reason: string, kind: string): Promise<void> {
    await this.#moods.updateOne(unlinked(_id), { $set: { 'atproto.state': 'failed', 'atproto.error': reason, 'atproto.refused': kind } })
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

  /**
   * Pending changes due by `now` (one user's, when given) that no live claim holds, the longest
   * waiting first. Candidates only: a sender claims each one before sending it. Claims are judged
   * on this process's clock, never on `now` (which callers move forward to make backoff due).
   */
  async due(opts: { now: Date; limit: number; user?: string }): Promise<MoodDoc[]> {
    return this.#moods
      .find({
        'atproto.state': 'pending',
        ...(opts.user === undefined ? {} : { user: opts.user }),
        $and: [{ $or: [{ 'atproto.nextAttemptAt': { $exists: false } }, { 'atproto.nextAttemptAt': { $lte: opts.now } }] }, claimable(new Date())],
      })
      .sort({ 'atproto.nextAttemptAt': 1, _id: 1 })
      .limit(opts.limit)
      .toArray()
  }

  /**
   * Takes the pending change for sending, atomically: null when it is not pending or another
   * sender's claim on it is live. Returns the document as claimed: the version to send.
   */
  async claim(_id: ObjectId, claim: Claim): Promise<MoodDoc | null> {
    return this.#moods.findOneAndUpdate({ _id, 'atproto.state': 'pending', ...claimable(new Date()) }, { $set: claimFields(claim) }, { returnDocument: 'after' })
  }

  /** Claims as many of these as are free (one claim for all), and returns those, as claimed. */
  async claimMany(ids: readonly ObjectId[], claim: Claim): Promise<MoodDoc[]> {
    if (ids.length === 0) return []
    await this.#moods.updateMany({ _id: { $in: [...ids] }, 'atproto.state': 'pending', ...claimable(new Date()) }, { $set: claimFields(claim) })
    return this.#moods.find({ _id: { $in: [...ids] }, 'atproto.claimedBy': claim.token }).sort({ _id: 1 }).toArray()
  }

  /**
   * The holder keeps its claim for a change queued while it was sending the previous one (an
   * edit, a delete): the document as it is now, or null when nothing is pending any more.
   */
  async renew(_id: ObjectId, claim: Claim): Promise<MoodDoc | null> {
    return this.#moods.findOneAndUpdate({ _id, 'atproto.state': 'pending', 'atproto.claimedBy': claim.token }, { $set: { 'atproto.claimedUntil': claim.until } }, { returnDocument: 'after' })
  }

  /** The holder lets go: the change (if still pending) is anyone's to send. */
  async release(_id: ObjectId, claim: Claim): Promise<void> {
    await this.#moods.updateOne({ _id, 'atproto.claimedBy': claim.token }, { $unset: CLAIM_FIELDS })
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

  /**
   * Not now: try again after `delayMs`; `uncertain` when the answer was lost (it may be written).
   * Recorded only by the claim's holder and for the version it sent; either way the claim ends,
   * so a change queued meanwhile is due at once.
   */
  async defer(doc: MoodDoc, claim: Claim, delayMs: number, reason: string, uncertain: boolean): Promise<void> {
    const res = await this.#moods.updateOne(heldPending(doc, claim), {
      $set: { 'atproto.nextAttemptAt': new Date(Date.now() + Math.max(0, delayMs)), 'atproto.error': reason, ...(uncertain ? { 'atproto.uncertain': true as const } : {}) },
      $inc: { 'atproto.attempts': 1 },
      $unset: CLAIM_FIELDS,
    })
    if (res.matchedCount === 0) await this.release(doc._id, claim)
  }

  /** Refused for good: kept, marked failed with the reason, never retried by itself. Ends the claim. */
  async fail(doc: MoodDoc, claim: Claim, reason: string): Promise<void> {
    const res = await this.#moods.updateOne(heldPending(doc, claim), { $set: { 'atproto.state': 'failed', 'atproto.error': reason }, $unset: { 'atproto.nextAttemptAt': '', ...CLAIM_FIELDS } })
    if (res.matchedCount === 0) await this.release(doc._id, claim)
  }

  /**
   * Milliseconds until the next pending change is due, or undefined when none is pending. A
   * claimed change is due when its claim lapses (its holder normally settles it long before).
   */
  async nextDueInMs(): Promise<number | undefined> {
    const now = new Date()
    const [free, held] = await Promise.all([
      this.#moods.find({ 'atproto.state': 'pending', ...claimable(now) }, { projection: { 'atproto.nextAttemptAt': 1 } }).sort({ 'atproto.nextAttemptAt': 1 }).limit(1).next(),
      this.#moods.find({ 'atproto.state': 'pending', 'atproto.claimedUntil': { $gt: now } }, { projection: { 'atproto.nextAttemptAt': 1, 'atproto.claimedUntil': 1 } }).sort({ 'atproto.claimedUntil': 1 }).limit(1).next(),
    ])
    const dueAt = [free && (free.atproto?.nextAttemptAt?.getTime() ?? 0), held && Math.max(held.atproto?.nextAttemptAt?.getTime() ?? 0, held.atproto!.claimedUntil!.getTime())].filter((t): t is number => typeof t === 'number')
    if (dueAt.length === 0) return undefined
    return Math.max(0, Math.min(...dueAt) - now.getTime())
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

  /** What erasure would remove: every document of the user (or of the DID). */
  async countAllOf(user: string, did: string | null): Promise<number> {
    return this.#moods.countDocuments(ownedBy(user, did))
  }

  /** Erasure, last step: the documents themselves go. */
  async removeAllOf(user: string, did: string | null): Promise<number> {
    return (await this.#moods.deleteMany(ownedBy(user, did))).deletedCount
  }
}

function unlinked(_id: ObjectId): Filter<MoodDoc> {
  return { _id, 'atproto.rkey': { $exists: false }, deleted: { $ne: true } }
}

/**
 * Guarded on the change still pending at the version sent and on the claim still ours: an echo
 * may have confirmed it meanwhile, an edit made it newer, or (after our claim lapsed) another
 * sender taken it over and its outcome is the one to record.
 */
function heldPending(doc: MoodDoc, claim: Claim): Filter<MoodDoc> {
  return { _id: doc._id, 'atproto.state': 'pending', 'atproto.version': doc.atproto?.version, 'atproto.claimedBy': claim.token }
}

/** Not claimed, or the claim lapsed (its holder died or overran): anyone may take it. */
function claimable(now: Date): Filter<MoodDoc> {
  return { $or: [{ 'atproto.claimedUntil': { $exists: false } }, { 'atproto.claimedUntil': { $lte: now } }] }
}

function claimFields(claim: Claim) {
  return { 'atproto.claimedBy': claim.token, 'atproto.claimedUntil': claim.until }
}

function ownedBy(user: string, did: string | null): Filter<MoodDoc> {
  return did ? { $or: [{ user }, { 'atproto.did': did }] } : { user }
}
