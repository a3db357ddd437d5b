import { TID } from '@atproto/common-web'
import { ObjectId, type Db } from 'mongodb'
import { XrpcClient } from '../atproto/xrpc.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { MoodDoc } from '../store/collections.ts'
import { Database } from '../store/database.ts'
import type { OutboxStats } from '../store/outbox.ts'
import type { Mood } from '../sync/mood.ts'
import { RateBudget } from './budget.ts'
import { CredentialStore } from './credentials.ts'
import { Erasure } from './erasure.ts'
import { OutboxEngine, type FlushResult, type WriteResult } from './outbox.ts'
import { NotFoundError, recordCid, StaleEditError, validate } from './records.ts'
import { SecretBox } from './secret-box.ts'
import { SessionManager } from './sessions.ts'

export { InvalidMoodError, NotFoundError, StaleEditError } from './records.ts'
export type { FlushResult, WriteResult } from './outbox.ts'

export interface WriterOptions {
  /** Where users' repos live (PDS_URL). */
  pdsUrl: string
  /** MOODSYNC_SECRET: enables encrypted credentials and persisted sessions. */
  secret?: string
  log?: Logger
  fetch?: typeof globalThis.fetch
  /** The per-account write budget; one per Writer unless shared. */
  budget?: RateBudget
}

/**
 * Posts, edits and deletes moods on both sides. MongoDB first (the mood is never lost), then
 * the user's PDS with `putRecord` under a TID minted here, which is safe to repeat. A PDS that
 * is down, slow or rate-limiting leaves the change pending for `flush()` (the retry worker);
 * it is never an error of the post. The outbox engine sends; erasure deletes outright.
 */
export class Writer {
  readonly sessions: SessionManager
  readonly budget: RateBudget
  readonly #store: Database
  readonly #engine: OutboxEngine
  readonly #erasure: Erasure

  /** `db`: moodsync's view of the database, or the driver's `Db` the platform already holds. */
  constructor(db: Database | Db, opts: WriterOptions) {
    this.#store = db instanceof Database ? db : new Database(db)
    const log = (opts.log ?? silentLogger).child({ component: 'writer' })
    const box = opts.secret ? new SecretBox(opts.secret) : undefined
    const client = new XrpcClient({ url: opts.pdsUrl, fetch: opts.fetch })
    this.budget = opts.budget ?? new RateBudget()
    this.sessions = new SessionManager({ sessions: this.#store.sessions, client, credentials: new CredentialStore(this.#store, box), box, log })
    const parts = { sessions: this.sessions, client, budget: this.budget, log }
    this.#engine = new OutboxEngine(this.#store.outbox, parts)
    this.#erasure = new Erasure(this.#store, parts)
  }

  async post(input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
    const doc = await this.#insert(input)
    return doc.atproto?.state === 'pending' ? this.#engine.attempt(doc._id, doc) : { id: doc._id.toHexString(), state: 'no-account' }
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
    const did = (await this.#store.users.didOf(input.user)) ?? null
    const doc: MoodDoc =
      did === null
        ? { _id, user: input.user, mood: mood.mood, when: mood.when, atproto: { state: 'no-account' } }
        : { _id, user: input.user, mood: mood.mood, when: mood.when, atproto: { did, rkey: TID.nextStr(), cid: await recordCid(mood), state: 'pending', op: 'put', version: 1, attempts: 0 } }
    await this.#store.outbox.insert(doc)
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
    // Swap against the version on the PDS; a mood never written yet has none to swap.
    // A pending change keeps the version it was going to replace (none if never written).
    const swap = at.state === 'pending' ? at.swap : at.cid
    const queued = await this.#store.outbox.queueEdit(doc, { mood: mood.mood, cid: await recordCid(mood), version: (at.version ?? 0) + 1, ...(swap ? { swap } : {}) })
    if (!queued) throw new StaleEditError(`mood ${input.id} changed while it was being edited`)
    return this.#engine.attempt(doc._id)
  }

  /** Soft-deletes the mood here and deletes its record. Idempotent. `id`: MongoDB id or rkey. */
  async delete(input: { user: string; id: string }): Promise<WriteResult> {
    const doc = await this.#find(input.user, input.id)
    const at = doc.atproto
    if (!at?.did || !at.rkey) {
      await this.#store.outbox.softDelete(doc._id)
      return { id: doc._id.toHexString(), state: at?.state ?? 'no-account' }
    }
    if (!(doc.deleted && at.op === 'delete')) await this.#store.outbox.queueDelete(doc)
    return this.#engine.attempt(doc._id)
  }

  /** Erases every mood of a user on both sides (account deletion). */
  forget(input: { user: string }): Promise<{ recordsDeleted: number; documentsDeleted: number }> {
    return this.#erasure.forget(input)
  }

  /** Deletes records of the user's repo directly (duplicates), paid from the budget first. */
  deleteRecords(input: { user: string; did: string; rkeys: readonly string[] }): Promise<{ deleted: number; rev?: string }> {
    return this.#erasure.deleteRecords(input)
  }

  /**
   * Gives moods that never had a record (written before moodsync, or while the user had no
   * account) an rkey and CID and queues them, for `flush()` to write. Never queues a mood twice;
   * a mood the lexicon refuses (too long, bad date) is marked failed with the reason.
   */
  async adopt(docs: readonly MoodDoc[]): Promise<{ queued: number; invalid: number; skipped: number }> {
    const result = { queued: 0, invalid: 0, skipped: 0 }
    const dids = new Map<string, string | null>()
    for (const doc of docs) {
      if (doc.user === null || doc.deleted || doc.atproto?.rkey !== undefined) {
        result.skipped++
        continue
      }
      if (!dids.has(doc.user)) dids.set(doc.user, (await this.#store.users.didOf(doc.user)) ?? null)
      const did = dids.get(doc.user)
      if (!did) {
        result.skipped++
        continue
      }
      let mood: Mood
      try {
        mood = validate({ mood: doc.mood, when: doc.when, ref: doc._id.toHexString() })
      } catch (err) {
        await this.#store.outbox.refuseUnlinked(doc._id, (err as Error).message)
        result.invalid++
        continue
      }
      if (await this.#store.outbox.adopt(doc, { did, rkey: TID.nextStr(), cid: await recordCid(mood) })) result.queued++
      else result.skipped++
    }
    return result
  }

  /** Failed or waiting changes become due now (their cause fixed); the budget still applies. */
  requeue(ids: readonly ObjectId[]): Promise<number> {
    return this.#store.outbox.requeue(ids)
  }

  /** The retry worker's step: every due pending change, within each account's budget. */
  flush(opts: { limit?: number; now?: Date; user?: string } = {}): Promise<FlushResult> {
    return this.#engine.flush(opts)
  }

  outboxStats(unconfirmedAfterMs?: number): Promise<OutboxStats> {
    return this.#store.outbox.stats(unconfirmedAfterMs)
  }

  nextDueInMs(): Promise<number | undefined> {
    return this.#store.outbox.nextDueInMs()
  }

  async #find(user: string, id: string): Promise<MoodDoc> {
    const doc = await this.#store.outbox.find(user, id)
    if (!doc) throw new NotFoundError(`no mood ${id} for ${user}`)
    return doc
  }
}
