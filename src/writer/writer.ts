import { TID } from '@atproto/common-web'
import { cidForLex } from '@atproto/lex-cbor'
import { ObjectId, type Db, type Filter } from 'mongodb'
import { MoodsyncError } from '../errors.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { MOOD_NSID, parseMood, toRecord, type Mood } from '../mood.ts'
import { Backoff } from '../retry.ts'
import { COLLECTIONS, type ForgottenDoc, type MoodDoc } from '../store/collections.ts'
import { RateBudget, WRITE_COST } from './budget.ts'
import { CredentialStore } from './credentials.ts'
import { PdsClient, PdsError } from './pds-client.ts'
import { SecretBox } from './secret-box.ts'
import { NoCredentialsError, SessionManager } from './sessions.ts'

export interface WriterOptions {
  /** Where users' repos live (PDS_URL). */
  pdsUrl: string
  /** MOODSYNC_SECRET: enables encrypted credentials and persisted sessions. */
  secret?: string
  log?: Logger
  fetch?: typeof globalThis.fetch
  /** Shared by every Writer of a process, so the per-account budget is one view. */
  budget?: RateBudget
}

export class InvalidMoodError extends MoodsyncError {
  override name = 'InvalidMoodError'
}
export class StaleEditError extends MoodsyncError {
  override name = 'StaleEditError'
}
export class NotFoundError extends MoodsyncError {
  override name = 'NotFoundError'
}

export interface WriteResult {
  id: string
  rkey?: string
  did?: string
  /** The outbox state after the immediate attempt: `written`, or `pending` (retried later). */
  state: NonNullable<NonNullable<MoodDoc['atproto']>['state']>
  cid?: string
}

export interface FlushResult {
  written: number
  deferred: number
  failed: number
  retried: number
}

/** applyWrites takes at most 200 writes and a body under 1,000,000 bytes. */
const MAX_WRITES = 200
const MAX_BODY = 900_000

/**
 * Posts, edits and deletes moods on both sides. MongoDB first (the mood is never lost), then
 * the user's PDS with `putRecord` under a TID minted here, which is safe to repeat. A PDS that
 * is down, slow or rate-limiting leaves the change pending for `flush()` (the retry worker);
 * it is never an error of the post. Nothing here reads process.env.
 */
export class Writer {
  readonly sessions: SessionManager
  readonly budget: RateBudget
  readonly #db: Db
  readonly #client: PdsClient
  readonly #credentials: CredentialStore
  readonly #log: Logger

  constructor(db: Db, opts: WriterOptions) {
    this.#db = db
    this.#log = (opts.log ?? silentLogger).child({ component: 'writer' })
    const box = opts.secret ? new SecretBox(opts.secret) : undefined
    this.#client = new PdsClient({ url: opts.pdsUrl, fetch: opts.fetch })
    this.#credentials = new CredentialStore(db, box)
    this.sessions = new SessionManager({ db, client: this.#client, credentials: this.#credentials, box, log: this.#log })
    this.budget = opts.budget ?? new RateBudget()
  }

  get #moods() {
    return this.#db.collection<MoodDoc>(COLLECTIONS.moods)
  }

  async post(input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
    const doc = await this.#insert(input)
    return doc.atproto?.state === 'pending' ? this.#attempt(doc._id, doc) : { id: doc._id.toHexString(), state: 'no-account' }
  }

  /**
   * Keeps the mood and queues its record without writing it now: for bulk work (migration),
   * where `flush()` then sends an account's moods together through applyWrites.
   */
  async enqueue(input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
    const doc = await this.#insert(input)
    const at = doc.atproto!
    return { id: doc._id.toHexString(), rkey: at.rkey, did: at.did, cid: at.cid, state: at.state! }
  }

  async #insert(input: { user: string; text: string; when?: Date }): Promise<MoodDoc> {
    const _id = new ObjectId()
    const mood = validate({ mood: input.text, when: input.when ?? new Date(), ref: _id.toHexString() })
    const did = await this.#credentials.didOf(input.user)
    const doc: MoodDoc =
      did === null
        ? { _id, user: input.user, mood: mood.mood, when: mood.when, atproto: { state: 'no-account' } }
        : { _id, user: input.user, mood: mood.mood, when: mood.when, atproto: { did, rkey: TID.nextStr(), cid: await recordCid(mood), state: 'pending', op: 'put', version: 1, attempts: 0 } }
    await this.#moods.insertOne(doc)
    return doc
  }

  /**
   * Changes a mood's text. `expectCid` is the record version the caller saw: if the mood has
   * changed since (here or on the PDS), the edit is refused instead of overwriting it.
   */
  async edit(input: { user: string; id: string; text: string; expectCid?: string }): Promise<WriteResult> {
    const doc = await this.#find(input.user, input.id)
    if (doc.deleted) throw new StaleEditError(`mood ${input.id} is deleted`)
    const at = doc.atproto
    if (!at?.did || !at.rkey) throw new NotFoundError(`mood ${input.id} has no ATProto record to edit`)
    if (input.expectCid !== undefined && at.cid !== input.expectCid) {
      throw new StaleEditError(`mood ${input.id} changed since it was read (expected ${input.expectCid}, now ${at.cid ?? 'none'})`)
    }
    const mood = validate({ mood: input.text, when: doc.when, ref: doc._id.toHexString() })
    const cid = await recordCid(mood)
    // Swap against the version on the PDS; a mood never written yet has none to swap.
    // A pending change keeps the version it was going to replace (none if never written).
    const swap = at.state === 'pending' ? at.swap : at.cid
    const version = (at.version ?? 0) + 1
    const res = await this.#moods.updateOne(
      { _id: doc._id, 'atproto.cid': at.cid, deleted: { $ne: true } },
      { $set: { mood: mood.mood, 'atproto.cid': cid, 'atproto.state': 'pending', 'atproto.op': 'put', 'atproto.version': version, 'atproto.attempts': 0, ...(swap ? { 'atproto.swap': swap } : {}) }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' } },
    )
    if (res.matchedCount === 0) throw new StaleEditError(`mood ${input.id} changed while it was being edited`)
    return this.#attempt(doc._id)
  }

  /** Soft-deletes the mood here and deletes its record. Idempotent. `id`: MongoDB id or rkey. */
  async delete(input: { user: string; id: string }): Promise<WriteResult> {
    const doc = await this.#find(input.user, input.id)
    const at = doc.atproto
    if (!at?.did || !at.rkey) {
      await this.#moods.updateOne({ _id: doc._id }, { $set: { deleted: true } })
      return { id: doc._id.toHexString(), state: at?.state ?? 'no-account' }
    }
    if (doc.deleted && at.op === 'delete') return this.#attempt(doc._id)
    await this.#moods.updateOne(
      { _id: doc._id },
      { $set: { deleted: true, 'atproto.state': 'pending', 'atproto.op': 'delete', 'atproto.version': (at.version ?? 0) + 1, 'atproto.attempts': 0 }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.swap': '' } },
    )
    return this.#attempt(doc._id)
  }

  /**
   * Erases every mood of a user on both sides (account deletion): all records of the
   * collection in the repo, ours or another client's, through applyWrites batches; then the
   * MongoDB documents. Resumable: run again after a failure, it finishes the job.
   */
  async forget(input: { user: string }): Promise<{ recordsDeleted: number; documentsDeleted: number }> {
    const did = await this.#credentials.didOf(input.user)
    const mine: Filter<MoodDoc> = did ? { $or: [{ user: input.user }, { 'atproto.did': did }] } : { user: input.user }
    if (did) {
      // Written first: the indexer then drops late echoes of anything older than this moment.
      await this.#db
        .collection<ForgottenDoc>(COLLECTIONS.forgotten)
        .updateOne({ _id: did }, { $set: { user: input.user, atUs: Date.now() * 1000 } }, { upsert: true })
    }
    await this.#moods.updateMany({ ...mine, deleted: { $ne: true } }, { $set: { deleted: true } })
    let recordsDeleted = 0
    if (did) recordsDeleted = (await this.deleteRecords({ user: input.user, did, rkeys: await this.#listRkeys(did) })).deleted
    const removed = await this.#moods.deleteMany(mine)
    this.#log.info({ user: input.user, recordsDeleted, documentsDeleted: removed.deletedCount }, 'forgot a user')
    return { recordsDeleted, documentsDeleted: removed.deletedCount }
  }

  /**
   * Deletes records of the user's repo directly (duplicates, erasure) in applyWrites batches,
   * each paid from the account's budget first. Returns the rev of the last commit, which
   * orders the deletes against anything the indexer sees.
   */
  async deleteRecords(input: { user: string; did: string; rkeys: readonly string[] }): Promise<{ deleted: number; rev?: string }> {
    let deleted = 0
    let rev: string | undefined
    for (let i = 0; i < input.rkeys.length; i += MAX_WRITES) {
      const chunk = input.rkeys.slice(i, i + MAX_WRITES)
      await this.#spend(input.did, chunk.length * WRITE_COST.delete)
      const res = await this.sessions.call<{ commit?: { rev: string } }>(input.user, 'com.atproto.repo.applyWrites', {
        body: { repo: input.did, writes: chunk.map((rkey) => ({ $type: 'com.atproto.repo.applyWrites#delete', collection: MOOD_NSID, rkey })) },
      })
      rev = res.commit?.rev ?? rev
      deleted += chunk.length
    }
    return { deleted, rev }
  }

  /**
   * Gives moods that never had a record (written before moodsync, or while the user had no
   * account) an rkey and CID and queues them, for `flush()` to write. Guarded on the rkey's
   * absence, so running it again, or concurrently, never queues a mood twice. A mood the
   * lexicon refuses (too long, bad date) is marked failed with the reason.
   */
  async adopt(docs: readonly MoodDoc[]): Promise<{ queued: number; invalid: number; skipped: number }> {
    const result = { queued: 0, invalid: 0, skipped: 0 }
    const dids = new Map<string, string | null>()
    for (const doc of docs) {
      if (doc.user === null || doc.deleted || doc.atproto?.rkey !== undefined) {
        result.skipped++
        continue
      }
      if (!dids.has(doc.user)) dids.set(doc.user, await this.#credentials.didOf(doc.user))
      const did = dids.get(doc.user)
      if (!did) {
        result.skipped++
        continue
      }
      const unlinked = { _id: doc._id, 'atproto.rkey': { $exists: false }, deleted: { $ne: true as const } }
      let mood: Mood
      try {
        mood = validate({ mood: doc.mood, when: doc.when, ref: doc._id.toHexString() })
      } catch (err) {
        await this.#moods.updateOne(unlinked, { $set: { 'atproto.state': 'failed', 'atproto.error': (err as Error).message } })
        result.invalid++
        continue
      }
      const res = await this.#moods.updateOne(unlinked, {
        $set: { 'atproto.did': did, 'atproto.rkey': TID.nextStr(), 'atproto.cid': await recordCid(mood), 'atproto.state': 'pending', 'atproto.op': 'put', 'atproto.version': (doc.atproto?.version ?? 0) + 1, 'atproto.attempts': 0 },
        $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' },
      })
      if (res.modifiedCount === 1) result.queued++
      else result.skipped++
    }
    return result
  }

  /**
   * Makes changes due now: failed ones go back in the outbox (their cause fixed), pending ones
   * waiting out a backoff are tried at once. The budget and the PDS's 429s still apply.
   */
  async requeue(ids: readonly ObjectId[]): Promise<number> {
    if (ids.length === 0) return 0
    const res = await this.#moods.updateMany(
      { _id: { $in: [...ids] }, 'atproto.state': { $in: ['failed', 'pending'] }, 'atproto.rkey': { $exists: true } },
      { $set: { 'atproto.state': 'pending', 'atproto.attempts': 0 }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '' } },
    )
    return res.modifiedCount
  }

  /**
   * The retry worker's step: writes every due pending change (oldest first), within each
   * account's budget. Returns what it did; never throws for PDS failures.
   */
  async flush(opts: { limit?: number; now?: Date; user?: string } = {}): Promise<FlushResult> {
    const now = opts.now ?? new Date()
    const due = await this.#moods
      .find({ 'atproto.state': 'pending', ...(opts.user === undefined ? {} : { user: opts.user }), $or: [{ 'atproto.nextAttemptAt': { $exists: false } }, { 'atproto.nextAttemptAt': { $lte: now } }] })
      .sort({ 'atproto.nextAttemptAt': 1, _id: 1 })
      .limit(opts.limit ?? 5000)
      .toArray()
    const result: FlushResult = { written: 0, deferred: 0, failed: 0, retried: 0 }
    const count = (state: WriteResult['state']) => {
      if (state === 'written' || state === 'confirmed') result.written++
      else if (state === 'failed') result.failed++
      else result.deferred++
      result.retried++
    }
    // First writes of one account travel together (applyWrites); the rest one by one.
    const creates = new Map<string, MoodDoc[]>()
    const single: MoodDoc[] = []
    for (const doc of due) {
      const at = doc.atproto!
      if (at.op === 'put' && at.rev === undefined && !at.swap && !at.uncertain && doc.user !== null) {
        creates.set(at.did!, [...(creates.get(at.did!) ?? []), doc])
      } else single.push(doc)
    }
    for (const docs of creates.values()) {
      if (docs.length === 1) single.push(docs[0]!)
      else for (const chunk of chunks(docs)) for (const state of await this.#createMany(chunk)) count(state)
    }
    for (const doc of single) count((await this.#attempt(doc._id, doc)).state)
    return result
  }

  /**
   * One applyWrites of first writes for one account. Every outcome is per document: success
   * marks each written; a lost answer marks each uncertain (the next try goes one by one with
   * putRecord, which is safe to repeat); a refusal sends each on its own to get its own verdict.
   */
  async #createMany(docs: MoodDoc[]): Promise<WriteResult['state'][]> {
    const did = docs[0]!.atproto!.did!
    const points = docs.length * WRITE_COST.create
    const wait = this.budget.waitMs(did, points)
    if (wait > 0) {
      for (const doc of docs) await this.#defer(doc, wait, 'rate-limit budget exhausted', false)
      return docs.map(() => 'pending')
    }
    this.budget.spend(did, points)
    try {
      const res = await this.sessions.call<{ commit?: { rev: string } }>(docs[0]!.user!, 'com.atproto.repo.applyWrites', {
        body: {
          repo: did,
          writes: docs.map((doc) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey: doc.atproto!.rkey, value: recordOf(doc) })),
        },
      })
      // One update per version present (normally one): a mood edited meanwhile keeps its newer
      // pending change, and only the echo can confirm what was written for it.
      const marked = new Set<string>()
      for (const version of new Set(docs.map((doc) => doc.atproto!.version))) {
        const ids = docs.filter((doc) => doc.atproto!.version === version).map((doc) => doc._id)
        const filter = { _id: { $in: ids }, 'atproto.state': 'pending' as const, 'atproto.version': version }
        const pendingIds = (await this.#moods.find(filter, { projection: { _id: 1 } }).toArray()).map((d) => d._id)
        await this.#moods.updateMany(
          { ...filter, _id: { $in: pendingIds } },
          { $set: { 'atproto.state': 'written', 'atproto.writtenAt': new Date(), ...(res.commit ? { 'atproto.rev': res.commit.rev } : {}) }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.attempts': '' } },
        )
        for (const id of pendingIds) marked.add(id.toHexString())
      }
      const states: WriteResult['state'][] = docs.map((doc) => (marked.has(doc._id.toHexString()) ? 'written' : 'confirmed'))
      return states
    } catch (err) {
      if (err instanceof PdsError && (err.transient || err.error === 'AccountDeactivated')) {
        if (err.status === 429 && err.retryAt) this.budget.block(did, err.retryAt)
        const delay = err.retryAt ? err.retryAt - Date.now() : backoffFor(docs[0]!.atproto!.attempts ?? 0)
        for (const doc of docs) await this.#defer(doc, delay, err.message, err.status === 0 || err.status >= 500)
        this.#log.warn({ did, writes: docs.length, err: err.message }, 'applyWrites failed; will retry')
        return docs.map(() => 'pending')
      }
      if (!(err instanceof PdsError) && !(err instanceof NoCredentialsError)) throw err
      const states: WriteResult['state'][] = []
      for (const doc of docs) states.push((await this.#attempt(doc._id, doc)).state)
      return states
    }
  }

  /** The outbox at a glance, for metrics: what waits, what failed, what the network never echoed. */
  async outboxStats(unconfirmedAfterMs = 5 * 60_000): Promise<{ pending: number; failed: number; unconfirmed: number }> {
    const [pending, failed, unconfirmed] = await Promise.all([
      this.#moods.countDocuments({ 'atproto.state': 'pending' }),
      this.#moods.countDocuments({ 'atproto.state': 'failed' }),
      this.#moods.countDocuments({ 'atproto.state': 'written', 'atproto.writtenAt': { $lt: new Date(Date.now() - unconfirmedAfterMs) } }),
    ])
    return { pending, failed, unconfirmed }
  }

  /** Seconds until the next pending change is due (for the worker's sleep), or undefined. */
  async nextDueInMs(): Promise<number | undefined> {
    const next = await this.#moods.find({ 'atproto.state': 'pending' }, { projection: { 'atproto.nextAttemptAt': 1 } }).sort({ 'atproto.nextAttemptAt': 1 }).limit(1).next()
    if (!next) return undefined
    return Math.max(0, (next.atproto?.nextAttemptAt?.getTime() ?? 0) - Date.now())
  }

  /** One write of one document's pending change; every outcome is recorded on the document. */
  async #attempt(_id: ObjectId, known?: MoodDoc): Promise<WriteResult> {
    const doc = known ?? (await this.#moods.findOne({ _id }))
    if (!doc?.atproto?.did || !doc.atproto.rkey || doc.user === null) throw new NotFoundError(`mood ${_id.toHexString()} vanished`)
    const at = doc.atproto
    const base = { id: _id.toHexString(), rkey: at.rkey, did: at.did, cid: at.cid }
    if (at.state !== 'pending') return { ...base, state: at.state ?? 'confirmed' }
    const did = at.did!
    const points = at.op === 'delete' ? WRITE_COST.delete : at.rev === undefined ? WRITE_COST.create : WRITE_COST.update
    const wait = this.budget.waitMs(did, points)
    if (wait > 0) {
      await this.#defer(doc, wait, 'rate-limit budget exhausted', false)
      return { ...base, state: 'pending' }
    }
    let rev: string | undefined
    try {
      rev = await this.#write(doc, points)
    } catch (err) {
      return this.#failed(doc, base, err)
    }
    try {
      const done = await this.#moods.updateOne(
        { _id, 'atproto.state': 'pending', 'atproto.version': at.version },
        { $set: { 'atproto.state': 'written', 'atproto.writtenAt': new Date(), ...(rev ? { 'atproto.rev': rev } : {}) }, $unset: { 'atproto.error': '', 'atproto.nextAttemptAt': '', 'atproto.uncertain': '', 'atproto.swap': '', 'atproto.attempts': '' } },
      )
      // No match: the echo confirmed it first, or a newer local change is now pending.
      return { ...base, state: done.matchedCount === 1 ? 'written' : 'confirmed' }
    } catch (err) {
      // The record is on the PDS; only our note of it failed. It stays pending, and the retry
      // (putRecord, same rkey and CID) or the echo settles it. The post itself succeeded.
      this.#log.warn({ id: base.id, err: (err as Error).message }, 'written to the PDS but not marked in MongoDB; will settle on retry')
      return { ...base, state: 'pending' }
    }
  }

  /** The retry decision for a write the PDS did not accept: later (transient) or never. */
  async #failed(doc: MoodDoc, base: Omit<WriteResult, 'state'>, err: unknown): Promise<WriteResult> {
    const at = doc.atproto!
    const did = at.did!
    if (err instanceof NoCredentialsError) {
      await this.#fail(doc, err.message)
      return { ...base, state: 'failed' }
    }
    if (!(err instanceof PdsError)) throw err
    if (err.status === 429 && err.retryAt) this.budget.block(did, err.retryAt)
    if (err.transient || err.error === 'AccountDeactivated') {
      const delay = err.retryAt ? err.retryAt - Date.now() : backoffFor(at.attempts ?? 0)
      // A lost answer (unreachable, timeout, 5xx) may hide a committed write.
      await this.#defer(doc, delay, err.message, err.status === 0 || err.status >= 500)
      this.#log.warn({ id: base.id, did, attempt: (at.attempts ?? 0) + 1, err: err.message }, 'PDS write failed; will retry')
      return { ...base, state: 'pending' }
    }
    await this.#fail(doc, err.message)
    this.#log.error({ id: base.id, did, err: err.message }, 'PDS refused the write; not retrying')
    return { ...base, state: 'failed' }
  }

  /** Sends the change; returns the commit rev when the PDS reports one. */
  async #write(doc: MoodDoc, points: number): Promise<string | undefined> {
    const at = doc.atproto!
    const did = at.did!
    const user = doc.user!
    const ref = { repo: did, collection: MOOD_NSID, rkey: at.rkey! }
    this.budget.spend(did, points)
    if (at.op === 'delete') {
      try {
        const res = await this.sessions.call<{ commit?: { rev: string } }>(user, 'com.atproto.repo.deleteRecord', { body: ref })
        return res.commit?.rev
      } catch (err) {
        // The PDS answers 500 to deleting a record that never existed (a post that never got
        // written): if it is not there, the delete is done.
        if (!(err instanceof PdsError) || err.status !== 500) throw err
        const current = await this.#client.call('com.atproto.repo.getRecord', { query: ref }).then(() => 'exists', (e: unknown) => (e instanceof PdsError && e.status === 400 ? 'missing' : 'unknown'))
        if (current === 'missing') return undefined
        throw err
      }
    }
    const record = recordOf(doc)
    try {
      const res = await this.sessions.call<{ cid: string; commit?: { rev: string } }>(user, 'com.atproto.repo.putRecord', {
        body: { ...ref, record, ...(at.swap ? { swapRecord: at.swap } : {}) },
      })
      return res.commit?.rev
    } catch (err) {
      // After a lost answer the swap target is our own earlier write: check before calling it stale.
      if (err instanceof PdsError && err.error === 'InvalidSwap') {
        const current = await this.#client.call<{ cid?: string }>('com.atproto.repo.getRecord', { query: ref }).catch(() => undefined)
        if (current?.cid === at.cid) return undefined
        throw new PdsError('com.atproto.repo.putRecord', 400, 'InvalidSwap', 'stale edit: the record changed on the PDS since this edit was made')
      }
      throw err
    }
  }

  async #defer(doc: MoodDoc, delayMs: number, reason: string, uncertain: boolean): Promise<void> {
    // Guarded on the change still pending: an echo may have confirmed it meanwhile.
    await this.#moods.updateOne(
      { _id: doc._id, 'atproto.state': 'pending', 'atproto.version': doc.atproto?.version },
      {
        $set: { 'atproto.nextAttemptAt': new Date(Date.now() + Math.max(0, delayMs)), 'atproto.error': reason, ...(uncertain ? { 'atproto.uncertain': true as const } : {}) },
        $inc: { 'atproto.attempts': 1 },
      },
    )
  }

  async #fail(doc: MoodDoc, reason: string): Promise<void> {
    await this.#moods.updateOne({ _id: doc._id, 'atproto.state': 'pending', 'atproto.version': doc.atproto?.version }, { $set: { 'atproto.state': 'failed', 'atproto.error': reason }, $unset: { 'atproto.nextAttemptAt': '' } })
  }

  async #spend(did: string, points: number): Promise<void> {
    const wait = this.budget.waitMs(did, points)
    if (wait > 0) throw new PdsError('applyWrites', 429, 'RateLimitExceeded', `budget exhausted for ${Math.ceil(wait / 1000)} s`, { retryAt: Date.now() + wait })
    this.budget.spend(did, points)
  }

  async #listRkeys(did: string): Promise<string[]> {
    const rkeys: string[] = []
    let cursor: string | undefined
    do {
      const page = await this.#client.call<{ records: { uri: string }[]; cursor?: string }>('com.atproto.repo.listRecords', {
        query: { repo: did, collection: MOOD_NSID, limit: '100', ...(cursor ? { cursor } : {}) },
      })
      rkeys.push(...page.records.map((r) => r.uri.split('/').pop()!))
      cursor = page.records.length > 0 ? page.cursor : undefined
    } while (cursor)
    return rkeys
  }

  async #find(user: string, id: string): Promise<MoodDoc> {
    const filter: Filter<MoodDoc> = /^[0-9a-f]{24}$/i.test(id) ? { _id: new ObjectId(id), user } : { 'atproto.rkey': id, user }
    const doc = await this.#moods.findOne(filter)
    if (!doc) throw new NotFoundError(`no mood ${id} for ${user}`)
    return doc
  }
}

function recordOf(doc: MoodDoc) {
  return toRecord({ mood: doc.mood, when: doc.when, ref: doc._id.toHexString() })
}

/** applyWrites batches: at most 200 writes, and a JSON body safely under the 1 MB cap. */
function* chunks(docs: MoodDoc[]): Generator<MoodDoc[]> {
  let chunk: MoodDoc[] = []
  let bytes = 0
  for (const doc of docs) {
    const size = Buffer.byteLength(JSON.stringify(recordOf(doc))) + 200
    if (chunk.length > 0 && (chunk.length >= MAX_WRITES || bytes + size > MAX_BODY)) {
      yield chunk
      chunk = []
      bytes = 0
    }
    chunk.push(doc)
    bytes += size
  }
  if (chunk.length > 0) yield chunk
}

function validate(mood: Mood): Mood {
  const parsed = parseMood(toRecord(mood))
  if (!parsed.ok) throw new InvalidMoodError(parsed.reason)
  return parsed.value
}

/** The CID the PDS will give the record: the writer knows it before writing, the echo matches it. */
async function recordCid(mood: Mood): Promise<string> {
  return (await cidForLex(toRecord(mood) as never)).toString()
}

/** Retry n of a write: 2 s doubling to an hour, jittered (the Backoff rule, stateless here). */
const WRITE_BACKOFF = new Backoff({ baseMs: 2_000, maxMs: 3_600_000 })
function backoffFor(attempts: number): number {
  return WRITE_BACKOFF.delayFor(attempts)
}
