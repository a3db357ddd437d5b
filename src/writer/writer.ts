import { TID } from '@atproto/common-web'
import { ObjectId, type Db } from 'mongodb'
import { PdsError, XrpcClient } from '../atproto/xrpc.ts'
import { LoginRefusedError, MoodsyncError } from '../errors.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { MoodDoc } from '../store/collections.ts'
import { Database } from '../store/database.ts'
import type { Claim, OutboxStats } from '../store/outbox.ts'
import { UnknownUserError } from '../store/users.ts'
import type { Mood } from '../sync/mood.ts'
import { RateBudget } from './budget.ts'
import { CredentialStore } from './credentials.ts'
import { Erasure } from './erasure.ts'
import { OutboxEngine, type FlushResult, type WriteResult, type WriterParts } from './outbox.ts'
import { deletePlan, type DeletePlan, type ForgetPlan } from './plans.ts'
import { InvalidMoodError, NotFoundError, recordCid, StaleEditError, validate } from './records.ts'
import { rewriteRecord } from './rewrite.ts'
import { SecretBox } from './secret-box.ts'
import { SessionManager } from './sessions.ts'
import { writeVerdict } from './verdict.ts'

export { InvalidMoodError, NotFoundError, StaleEditError } from './records.ts'
export type { FlushResult, WriteResult } from './outbox.ts'
export type { DeletePlan, ForgetPlan } from './plans.ts'

export interface WriterOptions {
  /** Where users' repos live (PDS_URL). */
  pdsUrl: string
  /** MOODSYNC_SECRET: enables encrypted credentials and persisted sessions. */
  secret?: string
  /** MOODSYNC_SECRET_PREVIOUS, during a rotation: sealed values still open with it. */
  previousSecret?: string
  log?: Logger
  fetch?: typeof globalThis.fetch
  /** The per-account write budget; one per Writer unless shared. */
  budget?: RateBudget
  /** How long a sender's claim on a pending change lasts if it never finishes (a crash). */
  claimMs?: number
}

/**
 * Posts, edits and deletes moods on both sides. What can be known to fail is checked before
 * anything is stored (an unknown user, no usable credentials, the wrong MOODSYNC_SECRET, a login
 * the PDS refuses): those throw and change nothing. Then MongoDB (the mood is never lost), then
 * the user's PDS with `putRecord` under a TID minted here, which is safe to repeat. Once a
 * change is stored the call never throws: it answers the change's state, and a PDS that is down,
 * slow or rate-limiting leaves it `pending` (with the reason) for the retry worker.
 */
export class Writer {
  readonly sessions: SessionManager
  readonly budget: RateBudget
  readonly #store: Database
  readonly #engine: OutboxEngine
  readonly #erasure: Erasure
  readonly #parts: WriterParts
  readonly #log: Logger

  /** `db`: moodsync's view of the database, or the driver's `Db` the platform already holds. */
  constructor(db: Database | Db, opts: WriterOptions) {
    if (opts.previousSecret !== undefined && opts.secret === undefined) throw new MoodsyncError('previousSecret is only read beside secret (the new key)')
    this.#store = db instanceof Database ? db : new Database(db)
    this.#log = (opts.log ?? silentLogger).child({ component: 'writer' })
    const box = opts.secret ? new SecretBox(opts.secret, opts.previousSecret) : undefined
    const client = new XrpcClient({ url: opts.pdsUrl, fetch: opts.fetch })
    this.budget = opts.budget ?? new RateBudget()
    this.sessions = new SessionManager({ sessions: this.#store.sessions, client, credentials: new CredentialStore(this.#store, box), box, log: this.#log })
    const parts = { sessions: this.sessions, client, budget: this.budget, log: this.#log }
    this.#parts = parts
    this.#engine = new OutboxEngine(this.#store.outbox, parts, { claimMs: opts.claimMs })
    this.#erasure = new Erasure(this.#store, parts)
  }

  /**
   * Throws (nothing stored) for an unknown user (UnknownUserError), an invalid mood, missing or
   * undecryptable credentials, a refused login. Otherwise the mood is stored and its state
   * answered: `written`, `pending` (with `error`: why not yet), `failed`, or `no-account`.
   */
  async post(input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
    const draft = await this.#draft(input)
    if (draft.did === null) return resultOf(await this.#insert(draft))
    const notNow = await this.#ready(input.user)
    // Inserted already claimed: no worker can pick the mood up before this attempt has run.
    const claim = notNow === undefined ? this.#engine.newClaim() : undefined
    const doc = await this.#insert(draft, claim)
    if (!claim) return { ...resultOf(doc), error: notNow }
    return this.#settle(resultOf(doc), () => this.#engine.attempt(doc._id, { doc, claim }))
  }

  /**
   * Keeps the mood and queues its record without writing it now: for bulk work (migration),
   * where `flush()` then sends an account's moods together through applyWrites.
   */
  async enqueue(input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
    return resultOf(await this.#insert(await this.#draft(input)))
  }

  /** The mood as it will be sent (validated) and its author's DID; an unknown user is an error. */
  async #draft(input: { user: string; text: string; when?: Date }): Promise<Draft> {
    const _id = new ObjectId()
    const mood = validate({ mood: input.text, when: input.when ?? new Date(), ref: _id.toHexString() })
    const did = await this.#store.users.didOfCached(input.user)
    if (did === undefined) throw new UnknownUserError(`no platform user ${JSON.stringify(input.user)}: nothing was stored`)
    return { _id, user: input.user, mood, did }
  }

  async #insert({ _id, user, mood, did }: Draft, claim?: Claim): Promise<MoodDoc> {
    const fields = { _id, user, mood: mood.mood, when: mood.when }
    const pending = async (did: string) => ({ did, rkey: TID.nextStr(), cid: await recordCid(mood), state: 'pending' as const, op: 'put' as const, version: 1, attempts: 0 })
    const doc: MoodDoc = { ...fields, atproto: did === null ? { state: 'no-account' } : { ...(await pending(did)), ...(claim ? { claimedBy: claim.token, claimedUntil: claim.until } : {}) } }
    await this.#store.outbox.insert(doc)
    return doc
  }

  /**
   * What can be known before storing a change. Throws what would make it fail for certain: no
   * credentials, the wrong key, a login the PDS refuses (LoginRefusedError). Answers why it cannot
   * be sent right now (the PDS unreachable: store it, the worker sends it), or undefined.
   */
  async #ready(user: string): Promise<string | undefined> {
    try {
      await this.sessions.prepare(user)
      return undefined
    } catch (err) {
      if (!(err instanceof PdsError)) throw err
      const verdict = writeVerdict(err, 0)
      if (verdict.retry) return verdict.reason
      throw new LoginRefusedError(`the PDS refused to log in as ${user}: ${err.message}`, { cause: err })
    }
  }

  /** The change is stored: whatever happens next, the answer is its state, never an error. */
  async #settle(base: Omit<WriteResult, 'state'>, send: () => Promise<WriteResult>): Promise<WriteResult> {
    try {
      return await send()
    } catch (err) {
      // Stored and pending: the retry worker sends it once the claim lapses. Throwing here would
      // tell the caller it failed, and a retried call would make a second mood.
      this.#log.error({ id: base.id, err }, 'stored, but the immediate write could not run; the retry worker will send it')
      return { ...base, state: 'pending', error: (err as Error).message }
    }
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
    const notNow = await this.#ready(input.user)
    const cid = await recordCid(mood)
    // Swap against the version on the PDS; a mood never written yet has none to swap.
    // A pending change keeps the version it was going to replace (none if never written).
    const swap = at.state === 'pending' ? at.swap : at.cid
    const queued = await this.#store.outbox.queueEdit(doc, { mood: mood.mood, cid, version: (at.version ?? 0) + 1, ...(swap ? { swap } : {}) })
    if (!queued) throw new StaleEditError(`mood ${input.id} changed while it was being edited`)
    const base = { id: doc._id.toHexString(), rkey: at.rkey, did: at.did, cid }
    if (notNow !== undefined) return { ...base, state: 'pending', error: notNow }
    return this.#settle(base, () => this.#engine.attempt(doc._id))
  }

  /** Soft-deletes the mood here and deletes its record. Idempotent. `id`: MongoDB id or rkey. */
  async delete(input: { user: string; id: string }): Promise<WriteResult> {
    const doc = await this.#find(input.user, input.id)
    const at = doc.atproto
    if (!at?.did || !at.rkey) {
      await this.#store.outbox.softDelete(doc._id)
      return { id: doc._id.toHexString(), state: at?.state ?? 'no-account' }
    }
    const base = { id: doc._id.toHexString(), rkey: at.rkey, did: at.did, cid: at.cid }
    const queue = !(doc.deleted && at.op === 'delete')
    const notNow = queue ? await this.#ready(input.user) : undefined
    if (queue) await this.#store.outbox.queueDelete(doc)
    if (notNow !== undefined) return { ...base, state: 'pending', error: notNow }
    return this.#settle(base, () => this.#engine.attempt(doc._id))
  }

  /** What `delete` would do, changing nothing (`moodsync delete --dry-run`). */
  async previewDelete(input: { user: string; id: string }): Promise<DeletePlan> {
    return deletePlan(await this.#find(input.user, input.id))
  }

  /** Erases every mood of a user on both sides (account deletion). */
  forget(input: { user: string }): Promise<{ recordsDeleted: number; documentsDeleted: number }> {
    return this.#erasure.forget(input)
  }

  /** What `forget` would erase, changing nothing (`moodsync forget --dry-run`). */
  previewForget(input: { user: string }): Promise<ForgetPlan> {
    return this.#erasure.plan(input)
  }

  /** Deletes records of the user's repo directly (duplicates), paid from the budget first. */
  deleteRecords(input: { user: string; did: string; rkeys: readonly string[] }): Promise<{ deleted: number; rev?: string }> {
    return this.#erasure.deleteRecords(input)
  }

  /** Rewrites one record in place (normalize): same rkey, swapped on the CID read, paid from the budget first. */
  rewriteRecord(input: { user: string; did: string; rkey: string; record: Record<string, unknown>; swapCid: string }): Promise<{ cid: string; rev?: string }> {
    return rewriteRecord(this.#parts, input)
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
        if (!(err instanceof InvalidMoodError)) throw err
        await this.#store.outbox.refuseUnlinked(doc._id, err.message, err.kind)
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

interface Draft {
  _id: ObjectId
  user: string
  mood: Mood
  did: string | null
}

function resultOf(doc: MoodDoc): WriteResult {
  const at = doc.atproto!
  return { id: doc._id.toHexString(), rkey: at.rkey, did: at.did, cid: at.cid, state: at.state! }
}
