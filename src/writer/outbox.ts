import type { ObjectId } from 'mongodb'
import { PdsError, type XrpcClient } from '../atproto/xrpc.ts'
import { NoCredentialsError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { Backoff } from '../retry.ts'
import type { MoodDoc } from '../store/collections.ts'
import type { OutboxState, OutboxStore } from '../store/outbox.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { WRITE_COST, type RateBudget } from './budget.ts'
import { applyWritesChunks, NotFoundError, recordOf } from './records.ts'
import type { SessionManager } from './sessions.ts'

export interface WriteResult {
  id: string
  rkey?: string
  did?: string
  /** The outbox state after the immediate attempt: `written`, or `pending` (retried later). */
  state: OutboxState
  cid?: string
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

/** What to do with a write the PDS did not accept. */
type Verdict = { retry: true; delayMs: number; uncertain: boolean } | { retry: false }

/** Retry n of a write: 2 s doubling to an hour, jittered. */
const WRITE_BACKOFF = new Backoff({ baseMs: 2_000, maxMs: 3_600_000 })

/**
 * Sends the outbox's pending changes to the PDS and records every outcome on the document:
 * written (guarded on the version, so a newer local change stays pending), deferred (a
 * transient failure, the budget, a 429's reset), or failed for good. Every write passes the
 * account's budget first; every failure gets its verdict from one place (`#verdict`).
 */
export class OutboxEngine {
  readonly #outbox: OutboxStore
  readonly #parts: WriterParts

  constructor(outbox: OutboxStore, parts: WriterParts) {
    this.#outbox = outbox
    this.#parts = parts
  }

  /**
   * Writes every due pending change (oldest first), within each account's budget: first writes
   * of one account together (applyWrites), the rest one by one. Never throws for PDS failures.
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
      const at = doc.atproto!
      if (at.op === 'put' && at.rev === undefined && !at.swap && !at.uncertain && doc.user !== null) {
        creates.set(at.did!, [...(creates.get(at.did!) ?? []), doc])
      } else single.push(doc)
    }
    for (const docs of creates.values()) {
      if (docs.length === 1) single.push(docs[0]!)
      else for (const chunk of applyWritesChunks(docs)) for (const state of await this.#createMany(chunk)) count(state)
    }
    for (const doc of single) count((await this.attempt(doc._id, doc)).state)
    return result
  }

  /** One write of one document's pending change; every outcome is recorded on the document. */
  async attempt(_id: ObjectId, known?: MoodDoc): Promise<WriteResult> {
    const doc = known ?? (await this.#outbox.get(_id))
    if (!doc?.atproto?.did || !doc.atproto.rkey || doc.user === null) throw new NotFoundError(`mood ${_id.toHexString()} vanished`)
    const at = doc.atproto
    const base = { id: _id.toHexString(), rkey: at.rkey, did: at.did, cid: at.cid }
    if (at.state !== 'pending') return { ...base, state: at.state ?? 'confirmed' }
    const points = at.op === 'delete' ? WRITE_COST.delete : at.rev === undefined ? WRITE_COST.create : WRITE_COST.update
    const wait = this.#parts.budget.take(at.did!, points)
    if (wait > 0) {
      await this.#outbox.defer(doc, wait, 'rate-limit budget exhausted', false)
      return { ...base, state: 'pending' }
    }
    let rev: string | undefined
    try {
      rev = await this.#write(doc)
    } catch (err) {
      const verdict = this.#verdict(at.did!, err, at.attempts ?? 0)
      if (verdict.retry) {
        await this.#outbox.defer(doc, verdict.delayMs, (err as Error).message, verdict.uncertain)
        this.#parts.log.warn({ id: base.id, did: at.did, attempt: (at.attempts ?? 0) + 1, err }, 'PDS write failed; will retry')
        return { ...base, state: 'pending' }
      }
      await this.#outbox.fail(doc, (err as Error).message)
      this.#parts.log.error({ id: base.id, did: at.did, err }, 'PDS refused the write; not retrying')
      return { ...base, state: 'failed' }
    }
    try {
      const marked = await this.#outbox.markWritten([_id], at.version, rev)
      // Not marked: the echo confirmed it first, or a newer local change is now pending.
      return { ...base, state: marked.size === 1 ? 'written' : 'confirmed' }
    } catch (err) {
      // The record is on the PDS; only our note of it failed. It stays pending, and the retry
      // (putRecord, same rkey and CID) or the echo settles it. The post itself succeeded.
      this.#parts.log.warn({ id: base.id, err }, 'written to the PDS but not marked in MongoDB; will settle on retry')
      return { ...base, state: 'pending' }
    }
  }

  /**
   * One applyWrites of first writes for one account. Success marks each written; a transient
   * failure defers each (a lost answer marks them uncertain: the next try goes one by one with
   * putRecord, safe to repeat); a refusal sends each on its own to get its own verdict.
   */
  async #createMany(docs: MoodDoc[]): Promise<OutboxState[]> {
    const did = docs[0]!.atproto!.did!
    const wait = this.#parts.budget.take(did, docs.length * WRITE_COST.create)
    if (wait > 0) {
      for (const doc of docs) await this.#outbox.defer(doc, wait, 'rate-limit budget exhausted', false)
      return docs.map(() => 'pending')
    }
    try {
      const res = await this.#parts.sessions.call<{ commit?: { rev: string } }>(docs[0]!.user!, 'com.atproto.repo.applyWrites', {
        body: { repo: did, writes: docs.map((doc) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey: doc.atproto!.rkey, value: recordOf(doc) })) },
      })
      // One mark per version present (normally one): a mood edited meanwhile keeps its newer
      // pending change, and only the echo can confirm what was written for it.
      const marked = new Set<string>()
      for (const version of new Set(docs.map((doc) => doc.atproto!.version))) {
        const ids = docs.filter((doc) => doc.atproto!.version === version).map((doc) => doc._id)
        for (const id of await this.#outbox.markWritten(ids, version, res.commit?.rev)) marked.add(id)
      }
      return docs.map((doc) => (marked.has(doc._id.toHexString()) ? 'written' : 'confirmed'))
    } catch (err) {
      const verdict = this.#verdict(did, err, docs[0]!.atproto!.attempts ?? 0)
      if (verdict.retry) {
        for (const doc of docs) await this.#outbox.defer(doc, verdict.delayMs, (err as Error).message, verdict.uncertain)
        this.#parts.log.warn({ did, writes: docs.length, err }, 'applyWrites failed; will retry')
        return docs.map(() => 'pending')
      }
      const states: OutboxState[] = []
      for (const doc of docs) states.push((await this.attempt(doc._id, doc)).state)
      return states
    }
  }

  /**
   * The retry decision, in one place: transient failures (network, timeout, 5xx, 429) and a
   * deactivated account come back later; a lost answer may hide a committed write (uncertain);
   * a refusal or missing credentials is final. Anything else is a bug and is thrown.
   */
  #verdict(did: string, err: unknown, attempts: number): Verdict {
    if (err instanceof NoCredentialsError) return { retry: false }
    if (!(err instanceof PdsError)) throw err
    if (err.status === 429 && err.retryAt) this.#parts.budget.block(did, err.retryAt)
    if (!err.transient && err.error !== 'AccountDeactivated') return { retry: false }
    return { retry: true, delayMs: err.retryAt ? err.retryAt - Date.now() : WRITE_BACKOFF.delayFor(attempts), uncertain: err.status === 0 || err.status >= 500 }
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
