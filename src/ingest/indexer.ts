import { MongoServerSelectionError } from 'mongodb'
import { StoreError } from '../errors.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { Backoff, sleep } from '../retry.ts'
import type { BackfillQueue } from '../store/backfill-queue.ts'
import type { CursorStore } from '../store/cursors.ts'
import type { ForgottenStore } from '../store/forgotten.ts'
import type { GapStore } from '../store/gaps.ts'
import type { IdentityStore } from '../store/identities.ts'
import type { RecordOp } from '../store/ops.ts'
import type { QuarantineEntry, QuarantineStore } from '../store/quarantine.ts'
import type { RecordStore } from '../store/records.ts'
import type { UserStore } from '../store/users.ts'
import { accountAction, type AccountAction } from '../sync/accounts.ts'
import type { AnyCollection } from '../sync/collection.ts'
import { moodCollection } from '../sync/mood.ts'
import { isInputFault } from '../store/mongo-errors.ts'
import { isStoreOp, tidTimeUs, toStoreOp, truncate, type OpOrigin } from '../sync/records.ts'
import { batches } from './batcher.ts'
import type { AccountEvent, CommitEvent, IngestEvent, ResyncEvent, Source } from './events.ts'
import { createIngestMetrics, type IngestMetrics } from './metrics.ts'

/**
 * What the indexer needs of MongoDB, and nothing more: `Database` (src/store/) is one; a
 * benchmark or unit test can pass an in-memory one (rig/memory-store.ts).
 */
export interface IndexerStore {
  cursors: Pick<CursorStore, 'get' | 'save'>
  quarantine: Pick<QuarantineStore, 'add'>
  gaps: Pick<GapStore, 'record'>
  backfill: Pick<BackfillQueue, 'add'>
  users: Pick<UserStore, 'resolve' | 'invalidate'>
  forgotten: Pick<ForgottenStore, 'since'>
  identities: Pick<IdentityStore, 'set'>
  records(collection: string): Pick<RecordStore<object>, 'apply' | 'withDocuments' | 'hideDids' | 'restoreDids' | 'deleteDids'>
  /** Reopens the connection (Store does); called when MongoDB has been failing for long. */
  reconnect?(): Promise<void>
}

export interface IndexerOptions {
  store: IndexerStore
  source: Source
  /** The record types to index (the source must follow the same); moods by default. */
  collections?: readonly AnyCollection[]
  log?: Logger
  metrics?: IngestMetrics
  /** Largest batch applied at once. */
  maxBatch?: number
  /** Events read ahead of the store before reading pauses. */
  highWater?: number
  /** The cursor is saved at most this often (and always on shutdown). */
  cursorSaveIntervalMs?: number
  /** Backoff for a batch that fails to apply (MongoDB down): retried until it succeeds. */
  storeBackoff?: Backoff
  /**
   * A MongoDB operation still unanswered after this long is abandoned and tried again: the
   * driver has no socket timeout, and a connection that went silent mid-request would hold the
   * stream for ever. Applying again is idempotent.
   */
  storeTimeoutMs?: number
  /** Called once a batch is durable in MongoDB, with its last cursor (benchmarks time it). */
  onApplied?: (batch: readonly IngestEvent[], cursor: number | undefined) => void
}

export interface IndexerState {
  /** Last cursor whose events are durable in MongoDB. */
  appliedCursor?: number
  /** When the network emitted the event at `appliedCursor` (µs), when known. */
  appliedTimeUs?: number
  savedCursor?: number
  lastAppliedAt?: number
  /**
   * Network time (ms) up to which everything is durable here: the last applied event's, or a
   * heartbeat's (the live stream caught up); lag is now minus this, so it grows while nothing
   * arrives on a dead line and not on a quiet one.
   */
  caughtUpTo?: number
  /** When `run` began (ms). */
  startedAt?: number
  gaps: number
  /** Set while MongoDB refuses the current batch. */
  storeFailingSince?: number
  /** Set while a MongoDB operation of the indexer is in flight (a hung server answers nothing). */
  storeBusySince?: number
  /** The last MongoDB failure's message, for the operator. */
  lastStoreError?: string
}

/**
 * Follows a source and keeps `moods` equal to the repos: batches events, validates records,
 * applies them idempotently, and saves the cursor only after the batch it covers is durable.
 * A failing MongoDB stops the reading (backpressure) and the batch is retried; nothing is
 * skipped and the cursor never passes an unapplied event.
 */
export class Indexer {
  readonly state: IndexerState = { gaps: 0 }
  readonly metrics: IngestMetrics
  readonly #opts: IndexerOptions
  readonly #log: Logger
  readonly #collections: ReadonlyMap<string, AnyCollection>
  /** Saves run one after another: a slow one never lands after a newer one. */
  #saving: Promise<void> = Promise.resolve()
  #saveTimer?: NodeJS.Timeout
  #lastSave = 0
  #savedInstance?: string
  #reconnectedAt = 0
  /** MongoDB operations of the indexer in flight, with when each began. */
  readonly #inFlight = new Map<symbol, number>()

  constructor(opts: IndexerOptions) {
    this.#opts = opts
    this.#log = (opts.log ?? silentLogger).child({ component: 'indexer' })
    this.metrics = opts.metrics ?? createIngestMetrics()
    this.metrics.live.lagSeconds = () => lagSeconds(this.state)
    this.metrics.live.connected = () => (opts.source.stats.connected ? 1 : 0)
    this.#collections = new Map((opts.collections ?? [moodCollection]).map((def) => [def.nsid, def]))
  }

  /** Runs until `signal` aborts; then flushes the cursor and resolves. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, source } = this.#opts
    const from = await this.#withStoreRetry(() => store.cursors.get(source.id), signal)
    this.state.savedCursor = from?.cursor
    this.state.appliedCursor = from?.cursor
    this.state.appliedTimeUs = from?.timeUs
    this.state.startedAt = Date.now()
    // At the tail we are caught up by definition; resuming, as far as the saved position.
    this.state.caughtUpTo = from === undefined ? Date.now() : from.timeUs === undefined ? undefined : from.timeUs / 1000
    this.#savedInstance = from?.instance
    const log = { source: source.id, instance: source.instance, cursor: from?.cursor ?? null, savedFrom: from?.instance ?? null }
    this.#log.info(log, from === undefined ? 'starting from the live tail' : 'resuming from the saved position')
    this.#lastSave = Date.now()
    let reconnectsSeen = source.stats.reconnects

    try {
      for await (const batch of batches(yieldingToIo(source.events(signal, from)), { maxSize: this.#opts.maxBatch ?? 1000, highWater: this.#opts.highWater ?? 5000 })) {
        const applied = await this.#withStoreRetry(() => this.#applyIsolating(batch), signal)
        if (applied === undefined) break // aborted while MongoDB was failing: this batch is not durable
        const position = lastPosition(batch)
        const cursor = position?.cursor
        if (position) {
          this.state.appliedCursor = position.cursor
          this.state.appliedTimeUs = position.timeUs
        }
        source.acknowledge?.(batch)
        this.#opts.onApplied?.(batch, cursor)
        this.metrics.reconnects.inc({}, source.stats.reconnects - reconnectsSeen)
        reconnectsSeen = source.stats.reconnects
        // Now if the last save is old enough, else soon: a lone event (a quiet stream) must not
        // wait for the next one, or for shutdown, to have its position kept. Never awaited
        // here: saves are chained (an older one never lands last), and the next batch must not
        // wait a round trip behind one.
        if (Date.now() - this.#lastSave >= this.#saveInterval) void this.#saveCursor(signal)
        else this.#saveSoon(signal)
      }
    } finally {
      clearTimeout(this.#saveTimer)
      this.#saveTimer = undefined
      await this.#saveCursor(signal, true)
    }
  }

  get #saveInterval(): number {
    return this.#opts.cursorSaveIntervalMs ?? 1000
  }

  #saveSoon(signal: AbortSignal): void {
    if (this.#saveTimer) return
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined
      if (!signal.aborted) void this.#saveCursor(signal)
    }, Math.max(0, this.#saveInterval - (Date.now() - this.#lastSave)))
  }

  #saveCursor(signal: AbortSignal, final = false): Promise<void> {
    this.#saving = this.#saving.then(() => this.#saveCursorNow(signal, final)).catch((err) => this.#log.warn({ err }, 'could not save the cursor'))
    return this.#saving
  }

  async #saveCursorNow(signal: AbortSignal, final: boolean): Promise<void> {
    this.#lastSave = Date.now()
    const { appliedCursor: cursor, appliedTimeUs: timeUs } = this.state
    if (cursor === undefined || (cursor === this.state.savedCursor && this.#savedInstance === this.#opts.source.instance)) return
    const position = { cursor, instance: this.#opts.source.instance, ...(timeUs === undefined ? {} : { timeUs }) }
    const save = () => this.#opts.store.cursors.save(this.#opts.source.id, position).then(() => true)
    // On shutdown, one try: if MongoDB is down the cursor stays behind, which only means replay.
    const saved = final
      ? await save().catch((err) => {
          this.#log.warn({ err }, 'could not save the cursor on shutdown')
          return false
        })
      : (await this.#withStoreRetry(save, signal)) === true
    if (!saved) return
    this.#log.debug({ cursor }, 'cursor saved')
    this.state.savedCursor = cursor
    this.#savedInstance = this.#opts.source.instance
    this.metrics.cursor.set(cursor)
  }

  /** Retries `work` with backoff while MongoDB fails; undefined when aborted first. */
  async #withStoreRetry<T>(work: () => Promise<T>, signal: AbortSignal): Promise<T | undefined> {
    const backoff = this.#opts.storeBackoff ?? new Backoff({ baseMs: 200, maxMs: 10_000 })
    for (;;) {
      const op = Symbol('store operation')
      try {
        this.#busy(op, Date.now())
        const value = await withDeadline(work(), this.#opts.storeTimeoutMs ?? DEFAULT_STORE_TIMEOUT_MS).finally(() => this.#busy(op, undefined))
        if (this.state.storeFailingSince !== undefined) this.#log.info('MongoDB is back; resuming')
        this.state.storeFailingSince = undefined
        return value
      } catch (err) {
        if (signal.aborted) return undefined
        this.metrics.storeErrors.inc()
        this.state.storeFailingSince ??= Date.now()
        this.state.lastStoreError = (err as Error).message
        await this.#reconnectIfWedged(err)
        const delay = backoff.next()
        this.#log.error({ err, retryInMs: Math.round(delay) }, 'MongoDB write failed; reading paused, retrying')
        await sleep(delay, signal)
        if (signal.aborted) return undefined
      }
    }
  }

  /**
   * A cursor save may run beside a batch's apply: `storeBusySince` is the oldest operation in
   * flight, so a hung one shows even when a newer one finishes.
   */
  #busy(op: symbol, since: number | undefined): void {
    if (since === undefined) this.#inFlight.delete(op)
    else this.#inFlight.set(op, since)
    this.state.storeBusySince = this.#inFlight.size === 0 ? undefined : Math.min(...this.#inFlight.values())
  }

  /**
   * After `RECONNECT_AFTER_MS` of server selection failing without a break, the client is
   * reopened (at most that often): a wedged driver monitor otherwise never recovers.
   */
  async #reconnectIfWedged(err: unknown): Promise<void> {
    const since = this.state.storeFailingSince
    if (!(err instanceof MongoServerSelectionError) || since === undefined || !this.#opts.store.reconnect) return
    const now = Date.now()
    if (now - since < RECONNECT_AFTER_MS || now - this.#reconnectedAt < RECONNECT_AFTER_MS) return
    this.#reconnectedAt = now
    await this.#opts.store.reconnect().catch((e) => this.#log.warn({ err: e }, 'could not reopen the MongoDB client; retrying'))
  }

  /**
   * Applies a batch; when it fails because of what it holds (not because MongoDB is down), it
   * is split until the event at fault is alone, and that event is quarantined: one hostile
   * event never holds up the ones behind it. A MongoDB failure propagates (and is retried).
   */
  async #applyIsolating(batch: IngestEvent[]): Promise<true> {
    try {
      return await this.#apply(batch)
    } catch (err) {
      if (!isInputFault(err)) throw err
      if (batch.length > 1) {
        const half = Math.ceil(batch.length / 2)
        await this.#applyIsolating(batch.slice(0, half))
        return this.#applyIsolating(batch.slice(half))
      }
      await this.#quarantineEvent(batch[0]!, err as Error)
      return true
    }
  }

  async #quarantineEvent(event: IngestEvent, err: Error): Promise<void> {
    const reason = `could not be applied: ${truncate(err.message, 300)}`
    const base = { source: this.#opts.source.id, reason, cursor: event.cursor, did: 'did' in event ? event.did : undefined }
    const entries: QuarantineEntry[] = event.kind === 'commit' ? event.ops.map((op) => ({ ...base, rkey: op.rkey, cid: op.action === 'upsert' ? op.cid : undefined })) : [base]
    await this.#opts.store.quarantine.add(entries)
    this.metrics.quarantined.inc({ kind: event.kind === 'commit' ? 'record' : 'event' }, entries.length)
    this.#log.warn({ err, kind: event.kind, did: base.did, cursor: event.cursor }, 'quarantined an event that could not be applied; the stream goes on')
  }

  async #apply(batch: IngestEvent[]): Promise<true> {
    const started = performance.now()
    const { store, source } = this.#opts
    const quarantine: QuarantineEntry[] = []
    const seen = new Set<string>()
    for (const event of batch) if (event.kind === 'commit') seen.add(event.did)
    const dids = [...seen]
    // One look-up each per batch, side by side: a quiet stream's lone event waits for one round trip, not two.
    const [users, forgotten] = dids.length > 0 ? await Promise.all([store.users.resolve(dids), store.forgotten.since(dids)]) : [new Map<string, string | null>(), new Map<string, number>()]
    // Ops and account changes in stages (`Stages`, below): what one DID did stays in order, while
    // the batch's DIDs share each write, however many they are.
    let stages = new Stages()

    // Counted per batch: a labelled counter update costs more than the event's own parse.
    const received = new Map<string, number>()
    let commits = 0
    const handles = new Map<string, string>()
    const resyncs: ResyncEvent[] = []
    // One origin for the batch, refilled per commit: toStoreOp copies what it needs from it.
    const origin: OpOrigin = { source: source.id, did: '', rev: '', cursor: undefined }
    for (const event of batch) {
      if (event.kind === 'commit') commits++
      else received.set(event.kind, (received.get(event.kind) ?? 0) + (event.kind === 'skip' ? (event.count ?? 1) : 1))
      switch (event.kind) {
        case 'commit': {
          const erasedAt = forgotten.get(event.did)
          // A late echo of a write from before `forget` must not resurrect an erased record.
          if (erasedAt !== undefined && tidTimeUs(event.rev) <= erasedAt) break
          origin.did = event.did
          origin.rev = event.rev
          origin.cursor = event.cursor
          const user = users.get(event.did) ?? null
          for (const op of event.ops) {
            const def = this.#collections.get(op.collection)
            if (!def) continue
            const result = toStoreOp(def, op, user, origin)
            if (!isStoreOp(result)) quarantine.push(result)
            else stages.op(def.mongoCollection, result)
          }
          break
        }
        case 'account':
          // Order matters per DID: what came before the status change is applied first.
          stages.account(event)
          break
        case 'identity':
          store.users.invalidate(event.did)
          if (event.handle !== undefined) handles.set(event.did, event.handle)
          break
        case 'invalid':
          quarantine.push({ source: source.id, reason: event.reason, did: event.did, rkey: event.rkey, cid: event.cid, cursor: event.cursor, raw: event.raw })
          break
        case 'gap': {
          // Everything before it is applied first (rare: one barrier per gap).
          await this.#applyStages(stages)
          stages = new Stages()
          const queued = await store.gaps.record({ source: source.id, reason: event.reason, requested: event.requested, cursor: event.cursor })
          this.state.gaps++
          this.metrics.gaps.inc()
          this.#log.error({ reason: event.reason, requested: event.requested, reposQueuedForBackfill: queued }, 'GAP: events were missed; repos queued for backfill (run moodsync backfill)')
          break
        }
        case 'resync':
          // Routine on a relay (reactivations, repairs): that repo alone is read again, queued
          // once the batch's records are applied.
          resyncs.push(event)
          break
        case 'skip':
        case 'heartbeat':
          break
      }
    }
    await this.#applyStages(stages)
    await this.#afterRecords(handles, resyncs)
    if (commits > 0) this.metrics.received.inc({ kind: 'commit' }, commits)
    for (const [kind, n] of received) this.metrics.received.inc({ kind }, n)
    await store.quarantine.add(quarantine)
    for (const entry of quarantine) {
      this.metrics.quarantined.inc({ kind: entry.rkey !== undefined ? 'record' : 'event' })
      this.#log.warn({ reason: entry.reason, did: entry.did, rkey: entry.rkey, cursor: entry.cursor }, 'quarantined')
    }

    const now = Date.now()
    const emitted = lastEmitted(batch)
    if (emitted !== undefined) this.state.caughtUpTo = Math.max(this.state.caughtUpTo ?? 0, emitted)
    this.state.lastAppliedAt = now
    this.metrics.batchSize.observe(batch.length)
    this.metrics.applySeconds.observe((performance.now() - started) / 1000)
    return true
  }

  /** Each stage's record ops (one apply per collection), then its account changes (one write per kind). */
  async #applyStages(stages: Stages): Promise<void> {
    for (const stage of stages.list) {
      for (const [collection, pending] of stage.ops) {
        const result = await this.#opts.store.records(collection).apply(pending)
        for (const [name, n] of Object.entries(result)) if (n > 0) this.metrics.applied.inc({ result: name }, n)
      }
      if (stage.accounts.length > 0) await this.#accounts(stage.accounts)
    }
  }

  /**
   * The handles and resyncs of the batch, for the DIDs we deal with: a platform user's, or one
   * with records in an indexed collection. Identity events and `#sync`s of the whole network
   * pass a collection filter; those of anyone else are not ours. One look-up for all of them.
   */
  async #afterRecords(handles: ReadonlyMap<string, string>, resyncs: readonly ResyncEvent[]): Promise<void> {
    const asking = [...new Set([...handles.keys(), ...resyncs.filter((e) => e.onlyIfKnown).map((e) => e.did)])]
    const known = await this.#known(asking)
    const ours = [...handles.keys()].filter((did) => known.has(did))
    await this.#opts.store.identities.set(ours.map((did) => ({ did, handle: handles.get(did)!, from: 'event' as const })))
    for (const did of ours) this.#log.info({ did, handle: handles.get(did) }, 'handle')

    const byReason = new Map<string, string[]>()
    for (const event of resyncs) {
      if (event.onlyIfKnown && !known.has(event.did)) continue
      const list = byReason.get(event.reason) ?? []
      if (!list.includes(event.did)) list.push(event.did)
      byReason.set(event.reason, list)
      this.#log.info({ did: event.did, reason: event.reason }, 'repo resync: queued for backfill')
    }
    for (const [reason, list] of byReason) {
      await this.#opts.store.backfill.add(list, reason)
      this.metrics.resyncs.inc({}, list.length)
    }
  }

  /** Those of `dids` that are a platform user's, or have records in an indexed collection. */
  async #known(dids: readonly string[]): Promise<Set<string>> {
    if (dids.length === 0) return new Set()
    const known = new Set([...(await this.#opts.store.users.resolve(dids))].filter(([, user]) => user).map(([did]) => did))
    for (const def of this.#collections.values()) {
      const rest = dids.filter((did) => !known.has(did))
      if (rest.length === 0) break
      for (const did of await this.#opts.store.records(def.mongoCollection).withDocuments(rest)) known.add(did)
    }
    return known
  }

  /** Every collection's records of these DIDs follow their accounts' status: one write per action for all. */
  async #accounts(events: readonly AccountEvent[]): Promise<void> {
    const groups = new Map<string, { action: AccountAction; status?: string; dids: string[] }>()
    for (const event of events) {
      const action = accountAction(event.active, event.status)
      this.metrics.accounts.inc({ action })
      this.#log.info({ did: event.did, active: event.active, status: event.status, action }, 'account status')
      if (action === 'ignore') continue
      const key = action === 'hide' ? `hide\u0000${event.status}` : action
      const group = groups.get(key) ?? { action, ...(action === 'hide' ? { status: event.status! } : {}), dids: [] }
      group.dids.push(event.did)
      groups.set(key, group)
    }
    for (const { action, status, dids } of groups.values()) {
      let changed = 0
      for (const def of this.#collections.values()) {
        const records = this.#opts.store.records(def.mongoCollection)
        if (action === 'restore') changed += await records.restoreDids(dids)
        else if (action === 'delete') changed += await records.deleteDids(dids)
        else if (action === 'hide') changed += await records.hideDids(dids, status!)
      }
      this.#log.info({ action, status, dids: dids.length, records: changed }, 'account status applied')
    }
  }
}

/**
 * A batch's writes in the order they must happen. Within a stage the record ops are applied
 * first, then the account changes. A DID's commit goes to the stage after its last account
 * change; an account change goes to the stage of the DID's last commit (after it) or the one
 * after its last account change. So the number of stages is bounded by how often one DID
 * alternates between commits and account changes in the batch, not by how many DIDs it holds.
 */
class Stages {
  readonly list: { ops: Map<string, RecordOp<object>[]>; accounts: AccountEvent[] }[] = []
  readonly #lastAccount = new Map<string, number>()
  readonly #lastCommit = new Map<string, number>()

  op(collection: string, op: RecordOp<object>): void {
    const index = (this.#lastAccount.get(op.did) ?? -1) + 1
    this.#lastCommit.set(op.did, index)
    const ops = this.#at(index).ops
    const list = ops.get(collection)
    if (list) list.push(op)
    else ops.set(collection, [op])
  }

  account(event: AccountEvent): void {
    const index = Math.max((this.#lastAccount.get(event.did) ?? -1) + 1, this.#lastCommit.get(event.did) ?? 0)
    this.#lastAccount.set(event.did, index)
    const accounts = this.#at(index).accounts
    // A later status of the DID in the same stage cannot happen (it goes to the next stage).
    accounts.push(event)
  }

  #at(index: number) {
    while (this.list.length <= index) this.list.push({ ops: new Map(), accounts: [] })
    return this.list[index]!
  }
}

/**
 * Lets I/O callbacks run at least every `IO_TURN_MS` while the source produces without waiting.
 * A relay sends in bursts, and the firehose source parses and verifies a burst's commits one
 * after another in promise jobs alone: the answer to the batch's MongoDB write, already there,
 * would wait behind the whole burst. Through the relay (bench/latency.ts, 3 runs each way, 120
 * moods) our source -> durable went from p50 17–19 ms to 9–18 ms. Once a millisecond, not per
 * event: the indexer's throughput on Jetstream frames is unchanged (jetstream-path, 53.6k/s
 * against 51.0k/s without).
 */
async function* yieldingToIo<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  let last = performance.now()
  for await (const item of source) {
    yield item
    if (performance.now() - last >= IO_TURN_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      last = performance.now()
    }
  }
}

const IO_TURN_MS = 1
const DEFAULT_STORE_TIMEOUT_MS = 60_000
const RECONNECT_AFTER_MS = 30_000

/** MongoDB answered nothing within the deadline (the operation is abandoned, then retried). */
export class StoreTimeoutError extends StoreError {
  override name = 'StoreTimeoutError'
}

function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(`MongoDB did not answer within ${ms / 1000} s`)), ms)
  })
  // The abandoned operation may still settle; its outcome is not ours to report.
  work.catch(() => {})
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}

/** The last cursor in the batch, with its network time when the event carries one. */
function lastPosition(batch: readonly IngestEvent[]): { cursor: number; timeUs?: number } | undefined {
  for (let i = batch.length - 1; i >= 0; i--) {
    const event = batch[i]!
    if (event.cursor === undefined) continue
    const emittedAt = 'emittedAt' in event ? event.emittedAt : undefined
    return emittedAt === undefined ? { cursor: event.cursor } : { cursor: event.cursor, timeUs: Math.round(emittedAt * 1000) }
  }
  return undefined
}

/**
 * Seconds the indexer is behind the network now. Resuming from a position of unknown time, it
 * counts from the start until the first event or heartbeat says better: never a claim of
 * being caught up that nothing showed.
 */
export function lagSeconds(state: IndexerState, now = Date.now()): number {
  const since = state.caughtUpTo ?? state.startedAt ?? now
  return Math.max(0, (now - since) / 1000)
}

function lastEmitted(batch: readonly IngestEvent[]): number | undefined {
  for (let i = batch.length - 1; i >= 0; i--) {
    const event = batch[i]!
    if ('emittedAt' in event && event.emittedAt !== undefined) return event.emittedAt
  }
  return undefined
}
