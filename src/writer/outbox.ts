import { randomBytes } from 'node:crypto'
import type { ObjectId } from 'mongodb'
import { PdsError, type XrpcClient } from '../atproto/xrpc.ts'
import { WrongSecretError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { MoodDoc } from '../store/collections.ts'
import type { Claim, OutboxState, OutboxStore } from '../store/outbox.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { WRITE_COST, type RateBudget } from './budget.ts'
import { applyWritesChunks, NotFoundError, recordOf } from './records.ts'
import type { SessionManager } from './sessions.ts'
import { writeVerdict } from './verdict.ts'

export interface WriteResult {
  id: string
  rkey?: string
  did?: string
  /** The outbox state after the immediate attempt: `written`, or `pending` (retried later). */
  state: OutboxState
  cid?: string
  /** Why the change is `pending` or `failed`: what the PDS answered, or what kept it from being sent now. */
  error?: string
}

export interface FlushResult {
  written: number
  deferred: number
  failed: number
  retried: number
}

/** What the writer's parts share: the account sessions, the PDS, the write budget, the log. */
export interface WriterParts {
  sessions: SessionManager
  client: XrpcClient
  budget: RateBudget
  log: Logger
}

/**
 * How long a claim holds a change by default: far longer than one send can take (a login and a
 * write, 15 s timeouts each, a check after a lost answer), so a live sender never loses its
 * claim, and short enough that a crashed sender's changes go out again within minutes.
 */
export const DEFAULT_CLAIM_MS = 120_000
/** Newer changes of one mood a holder sends in a row before leaving the rest to the worker. */
const MAX_ROUNDS = 5

/** The result of one send: settled, or superseded by a change queued while it was in flight. */
type Sent = WriteResult | 'superseded'

/**
 * Sends the outbox's pending changes to the PDS and records every outcome on the document:
 * written (guarded on the version, so a newer local change stays pending), deferred (a
 * transient failure, the budget, a 429's reset), or failed for good. A change is claimed in
 * MongoDB before it is sent (one sender per change, whichever process); every write passes the
 * account's budget first; every failure gets its verdict from one place (`writeVerdict`).
 */
export class OutboxEngine {
  readonly #outbox: OutboxStore
  readonly #parts: WriterParts
  readonly #claimMs: number
  /** Names this engine's claims (for whoever reads a stuck document) and keeps them unique. */
  readonly #id = randomBytes(4).toString('hex')
  #claims = 0

  constructor(outbox: OutboxStore, parts: WriterParts, opts: { claimMs?: number } = {}) {
    this.#outbox = outbox
    this.#parts = parts
    this.#claimMs = opts.claimMs ?? DEFAULT_CLAIM_MS
  }

  /** A fresh claim: a post inserts its mood already claimed, so no worker can send it first. */
  newClaim(): Claim {
    return { token: `${this.#id}:${++this.#claims}`, until: new Date(Date.now() + this.#claimMs) }
  }

  /**
   * Writes every due pending change (oldest first), within each account's budget: first writes
   * of one account together (applyWrites), the rest one by one. Each is claimed just before it
   * is sent; one another sender holds is skipped. Never throws for PDS failures.
   */
  async flush(opts: { limit?: number; now?: Date; user?: string } = {}): Promise<FlushResult> {
    const due = await this.#outbox.due({ now: opts.now ?? new Date(), limit: opts.limit ?? 5000, user: opts.user })
    const result: FlushResult = { written: 0, deferred: 0, failed: 0, retried: 0 }
    const count = (state: OutboxState) => {
      if (state === 'written' || state === 'confirmed') result.written++
      else if (state === 'failed') result.failed++
      else result.deferred++
      result.retried++
    }
    const creates = new Map<string, MoodDoc[]>()
    const single: MoodDoc[] = []
    for (const doc of due) {
      if (isFirstWrite(doc)) creates.set(doc.atproto!.did!, [...(creates.get(doc.atproto!.did!) ?? []), doc])
      else single.push(doc)
    }
    for (const docs of creates.values()) {
      if (docs.length === 1) {
        single.push(docs[0]!)
        continue
      }
      for (const chunk of applyWritesChunks(docs)) {
        const claim = this.newClaim()
        // As claimed: another sender may have taken some, or an edit changed one since `due`.
        const held = await this.#outbox.claimMany(chunk.map((doc) => doc._id), claim)
        const together = held.filter(isFirstWrite)
        for (const doc of held.filter((d) => !isFirstWrite(d))) count((await this.#drive(doc, claim, 1)).state)
        if (together.length === 1) count((await this.#drive(together[0]!, claim, 1)).state)
        else if (together.length > 1) for (const state of await this.#createMany(together, claim)) count(state)
      }
    }
    for (const doc of single) {
      const claim = this.newClaim()
      const held = await this.#outbox.claim(doc._id, claim)
      if (held) count((await this.#drive(held, claim, 1)).state)
    }
    return result
  }

  /**
   * One write of one document's pending change, now; every outcome is recorded on the document.
   * `held`: the document and the claim its caller already holds (a post inserts its mood
   * claimed). Without it the change is claimed here; when another sender holds it, that sender
   * sends it (after the change it is sending) and the answer is `pending`.
   */
  async attempt(_id: ObjectId, held?: { doc: MoodDoc; claim: Claim }): Promise<WriteResult> {
    if (held) return this.#drive(held.doc, held.claim, 1)
    const claim = this.newClaim()
    const doc = await this.#outbox.claim(_id, claim)
    if (doc) return this.#drive(doc, claim, 1)
    const current = await this.#outbox.get(_id)
    if (!current) throw new NotFoundError(`mood ${_id.toHexString()} vanished`)
    const result = resultOf(current)
    return result.state === 'pending' ? { ...result, error: 'another process is sending an earlier change of this mood; this one follows it' } : result
  }

  /** Sends the claimed change; if a newer one was queued meanwhile, keeps the claim and sends that too. */
  async #drive(doc: MoodDoc, claim: Claim, round: number): Promise<WriteResult> {
    const sent = await this.#send(doc, claim)
    return sent === 'superseded' ? this.#resume(doc._id, claim, round + 1) : sent
  }

  async #resume(_id: ObjectId, claim: Claim, round: number): Promise<WriteResult> {
    const next = round <= MAX_ROUNDS ? await this.#outbox.renew(_id, { ...claim, until: new Date(Date.now() + this.#claimMs) }) : null
    if (next) return this.#drive(next, claim, round)
    // Nothing pending any more (the echo confirmed it), or enough rounds: let go of it.
    await this.#outbox.release(_id, claim)
    const current = await this.#outbox.get(_id)
    return current ? resultOf(current) : { id: _id.toHexString(), state: 'confirmed' }
  }

  /** The budget gate, the write, and its outcome recorded (guarded on version and claim). */
  async #send(doc: MoodDoc, claim: Claim): Promise<Sent> {
    const at = doc.atproto!
    if (!at.did || !at.rkey || doc.user === null) throw new NotFoundError(`mood ${doc._id.toHexString()} has no record to write`)
    const { error: _previous, ...base } = resultOf(doc)
    const points = at.op === 'delete' ? WRITE_COST.delete : at.rev === undefined ? WRITE_COST.create : WRITE_COST.update
    const wait = this.#parts.budget.take(at.did, points)
    if (wait > 0) {
      await this.#outbox.defer(doc, claim, wait, 'rate-limit budget exhausted', false)
      return { ...base, state: 'pending', error: 'rate-limit budget exhausted' }
    }
    let rev: string | undefined
    try {
      rev = await this.#write(doc)
    } catch (err) {
      if (err instanceof PdsError && err.status === 429 && err.retryAt) this.#parts.budget.block(at.did, err.retryAt)
      const verdict = writeVerdict(err, at.attempts ?? 0)
      if (verdict.retry) {
        await this.#outbox.defer(doc, claim, verdict.delayMs, verdict.reason, verdict.uncertain)
        // The wrong key is this process's configuration: an operator must see it, loudly.
        if (err instanceof WrongSecretError) this.#parts.log.error({ id: base.id, did: at.did, err }, 'cannot decrypt the credentials with this MOODSYNC_SECRET; the change waits for a process with the right key')
        else this.#parts.log.warn({ id: base.id, did: at.did, attempt: (at.attempts ?? 0) + 1, err }, 'PDS write failed; will retry')
        return { ...base, state: 'pending', error: verdict.reason }
      }
      await this.#outbox.fail(doc, claim, verdict.reason)
      this.#parts.log.error({ id: base.id, did: at.did, err }, 'PDS refused the write; not retrying')
      return { ...base, state: 'failed', error: verdict.reason }
    }
    try {
      const marked = await this.#outbox.markWritten([doc._id], at.version, rev)
      // Not marked: a newer local change is pending (sent next), or the echo confirmed it first.
      return marked.size === 1 ? { ...base, state: 'written' } : 'superseded'
    } catch (err) {
      // The record is on the PDS; only our note of it failed. It stays pending (the claim lapses),
      // and the retry (putRecord, same rkey and CID) or the echo settles it. The post succeeded.
      this.#parts.log.warn({ id: base.id, err }, 'written to the PDS but not marked in MongoDB; will settle on retry')
      return { ...base, state: 'pending', error: 'written to the PDS, not yet marked in MongoDB' }
    }
  }

  /**
   * One applyWrites of claimed first writes for one account. Success marks each written; a
   * transient failure defers each (a lost answer marks them uncertain: the next try goes one by
   * one with putRecord, safe to repeat); a refusal sends each on its own to get its own verdict.
   */
  async #createMany(docs: MoodDoc[], claim: Claim): Promise<OutboxState[]> {
    const did = docs[0]!.atproto!.did!
    const wait = this.#parts.budget.take(did, docs.length * WRITE_COST.create)
    if (wait > 0) {
      for (const doc of docs) await this.#outbox.defer(doc, claim, wait, 'rate-limit budget exhausted', false)
      return docs.map(() => 'pending')
    }
    let rev: string | undefined
    try {
      const res = await this.#parts.sessions.call<{ commit?: { rev: string } }>(docs[0]!.user!, 'com.atproto.repo.applyWrites', {
        body: { repo: did, writes: docs.map((doc) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey: doc.atproto!.rkey, value: recordOf(doc) })) },
      })
      rev = res.commit?.rev
    } catch (err) {
      if (err instanceof PdsError && err.status === 429 && err.retryAt) this.#parts.budget.block(did, err.retryAt)
      const verdict = writeVerdict(err, docs[0]!.atproto!.attempts ?? 0)
      if (verdict.retry) {
        for (const doc of docs) await this.#outbox.defer(doc, claim, verdict.delayMs, verdict.reason, verdict.uncertain)
        this.#parts.log.warn({ did, writes: docs.length, err }, 'applyWrites failed; will retry')
        return docs.map(() => 'pending')
      }
      const states: OutboxState[] = []
      for (const doc of docs) states.push((await this.#drive(doc, claim, 1)).state)
      return states
    }
    // One mark per version present (normally one): a mood edited meanwhile keeps its newer
    // pending change, which the claim's holder then sends on its own.
    const marked = new Set<string>()
    for (const version of new Set(docs.map((doc) => doc.atproto!.version))) {
      const ids = docs.filter((doc) => doc.atproto!.version === version).map((doc) => doc._id)
      for (const id of await this.#outbox.markWritten(ids, version, rev)) marked.add(id)
    }
    const states: OutboxState[] = []
    for (const doc of docs) states.push(marked.has(doc._id.toHexString()) ? 'written' : (await this.#resume(doc._id, claim, 2)).state)
    return states
  }

  /** Sends the change; returns the commit rev when the PDS reports one. */
  async #write(doc: MoodDoc): Promise<string | undefined> {
    const at = doc.atproto!
    const ref = { repo: at.did!, collection: MOOD_NSID, rkey: at.rkey! }
    if (at.op === 'delete') {
      try {
        return (await this.#parts.sessions.call<{ commit?: { rev: string } }>(doc.user!, 'com.atproto.repo.deleteRecord', { body: ref })).commit?.rev
      } catch (err) {
        // The PDS answers 500 to deleting a record that never existed (a post that never got
        // written): if it is not there, the delete is done.
        if (!(err instanceof PdsError) || err.status !== 500) throw err
        const current = await this.#parts.client.call('com.atproto.repo.getRecord', { query: ref }).then(() => 'exists', (e: unknown) => (e instanceof PdsError && e.status === 400 ? 'missing' : 'unknown'))
        if (current === 'missing') return undefined
        throw err
      }
    }
    try {
      const res = await this.#parts.sessions.call<{ cid: string; commit?: { rev: string } }>(doc.user!, 'com.atproto.repo.putRecord', {
        body: { ...ref, record: recordOf(doc), ...(at.swap ? { swapRecord: at.swap } : {}) },
      })
      return res.commit?.rev
    } catch (err) {
      // After a lost answer the swap target is our own earlier write: check before calling it stale.
      if (err instanceof PdsError && err.error === 'InvalidSwap') {
        const current = await this.#parts.client.call<{ cid?: string }>('com.atproto.repo.getRecord', { query: ref }).catch(() => undefined)
        if (current?.cid === at.cid) return undefined
        throw new PdsError('com.atproto.repo.putRecord', 400, 'InvalidSwap', 'stale edit: the record changed on the PDS since this edit was made')
      }
      throw err
    }
  }
}

/** A change that creates its record: several of one account go together in one applyWrites. */
function isFirstWrite(doc: MoodDoc): boolean {
  const at = doc.atproto!
  return at.op === 'put' && at.rev === undefined && !at.swap && !at.uncertain && doc.user !== null
}

function resultOf(doc: MoodDoc): WriteResult {
  const at = doc.atproto
  return { id: doc._id.toHexString(), rkey: at?.rkey, did: at?.did, cid: at?.cid, state: at?.state ?? 'confirmed', ...(at?.error && (at.state === 'pending' || at.state === 'failed') ? { error: at.error } : {}) }
}
