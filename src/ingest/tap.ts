import { silentLogger, type Logger } from '../logger.ts'
import type { Backoff } from '../retry.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { truncate, type IngestEvent, type Source, type SourceStats } from './events.ts'
import { websocketFeed } from './websocket-feed.ts'

export interface TapSourceOptions {
  /** The Tap instance's HTTP base (`http://127.0.0.1:2480`); events come over its `/channel`. */
  url: string
  /** Its `--admin-password`, sent as Basic auth (user `admin`). */
  adminPassword?: string
  /** The NSIDs to index (Tap filters with its own `--collection-filters`; so does the parser). */
  collections?: readonly string[]
  /** Repos to ask Tap to track on every connection (`/repos/add` is idempotent). */
  repos?: () => Promise<readonly string[]>
  log?: Logger
  backoff?: Backoff
  highWater?: number
  /** A connection silent this long (no frame, no pong) is dropped and reopened (websocket-feed.ts). */
  idleTimeoutMs?: number
}

/**
 * Tap (indigo `cmd/tap`): verified JSON events, one record op each, delivered at least once.
 * Tap keeps the position itself: each event is acknowledged once the indexer has made it
 * durable (`acknowledge`), and anything unacknowledged is sent again after a restart or its
 * retry timeout, so the saved cursor (Tap's event id) is informative only.
 *
 * Tap sends no deletes when it backfills or resyncs a repo, only the records it finds: the
 * first non-live event of each such run (the first of a repo, or the first after a live one)
 * also queues moodsync's own backfill of that repo, which compares and deletes what the repo
 * no longer has. A run that finds no record at all sends nothing to notice it by; `moodsync
 * repair` finds those deletes.
 */
export class TapSource implements Source {
  readonly id = 'tap'
  readonly instance: string
  readonly stats: SourceStats = { connected: false, reconnects: 0, framesReceived: 0 }
  readonly #opts: TapSourceOptions
  readonly #log: Logger
  readonly #collections: ReadonlySet<string>
  /** The ack each event's delivery is owed, sent once the event is durable. */
  readonly #acks = new WeakMap<IngestEvent, () => boolean>()

  constructor(opts: TapSourceOptions) {
    this.#opts = { ...opts, url: opts.url.replace(/\/+$/, '') }
    this.#collections = new Set(opts.collections ?? [MOOD_NSID])
    this.#log = (opts.log ?? silentLogger).child({ component: 'tap' })
    this.instance = this.#opts.url
  }

  async *events(signal: AbortSignal): AsyncGenerator<IngestEvent[]> {
    const headers = this.#authorization ? { authorization: this.#authorization } : undefined
    const channel = `${this.#opts.url.replace(/^http/, 'ws')}/channel`
    // Repos in a Tap backfill run, as far as its events tell.
    let backfilling = new Set<string>()
    let connections = this.stats.reconnects
    // Tap sends nothing until it tracks a repo: ask before the first event, not on it.
    void this.#addRepos(signal)
    const feed = { url: () => channel, headers, signal, stats: this.stats, log: this.#log, backoff: this.#opts.backoff, highWater: this.#opts.highWater, idleTimeoutMs: this.#opts.idleTimeoutMs, heartbeats: true }
    for await (const messages of websocketFeed(feed)) {
      // One array is one connection's.
      if (this.stats.reconnects !== connections) {
        // A new connection: Tap may resend a backfill, so each repo's compare is owed again;
        // and a Tap that restarted on an empty database tracks nothing until asked again.
        connections = this.stats.reconnects
        backfilling = new Set()
        void this.#addRepos(signal)
      }
      const out: IngestEvent[] = []
      for (const message of messages) {
        // Tap pushes all it holds for us unasked: a pong with nothing waiting means caught up.
        if (message.heartbeat !== undefined) {
          out.push({ kind: 'heartbeat', emittedAt: message.heartbeat })
          continue
        }
        const { id, live, events } = parseTapEvent(message.data.toString('utf8'), this.#collections)
        // Acknowledged with the last of its events: only when all of them are durable.
        if (id !== undefined) this.#acks.set(events[events.length - 1]!, () => message.reply(JSON.stringify({ type: 'ack', id })))
        for (const event of events) {
          if (event.kind === 'commit') {
            if (live) backfilling.delete(event.did)
            else if (!backfilling.has(event.did)) {
              backfilling.add(event.did)
              out.push({ kind: 'resync', cursor: event.cursor, did: event.did, reason: 'tap backfill (it sends no deletes)' })
            }
          }
          out.push(event)
        }
      }
      if (out.length > 0) yield out
    }
  }

  /** Called once `events` are durable: Tap may forget them. */
  acknowledge(events: readonly IngestEvent[]): void {
    let lost = 0
    for (const event of events) {
      const ack = this.#acks.get(event)
      if (ack && !ack()) lost++
      this.#acks.delete(event)
    }
    // Not a loss: Tap sends what it did not hear acknowledged again, and applying is idempotent.
    if (lost > 0) this.#log.debug({ events: lost }, 'connection closed before the ack; Tap will resend')
  }

  get #authorization(): string | undefined {
    return this.#opts.adminPassword === undefined ? undefined : `Basic ${Buffer.from(`admin:${this.#opts.adminPassword}`).toString('base64')}`
  }

  async #addRepos(signal: AbortSignal): Promise<void> {
    if (!this.#opts.repos) return
    try {
      const dids = await this.#opts.repos()
      if (dids.length === 0) return
      const res = await fetch(`${this.#opts.url}/repos/add`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.#authorization ? { authorization: this.#authorization } : {}) },
        body: JSON.stringify({ dids }),
        signal,
      })
      await res.body?.cancel()
      if (!res.ok) throw new Error(`/repos/add answered ${res.status}`)
      this.#log.info({ repos: dids.length }, 'asked Tap to track the platform users’ repos')
    } catch (err) {
      if (!signal.aborted) this.#log.warn({ err }, 'could not ask Tap to track the platform users’ repos; it follows the ones it has')
    }
  }
}

const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]{1,2048}$/

export interface TapMessage {
  /** Tap's event id, the one to acknowledge. */
  id?: number
  /** From the live stream, not a backfill or resync. */
  live: boolean
  /** At least one. */
  events: IngestEvent[]
}

/**
 * One Tap message to our events. Never throws: bad input becomes `invalid`. An identity event
 * is both an identity change (handle) and the account's status.
 */
export function parseTapEvent(text: string, collections: ReadonlySet<string> = new Set([MOOD_NSID])): TapMessage {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { live: false, events: [{ kind: 'invalid', reason: `malformed JSON: ${(err as Error).message}`, raw: truncate(text) }] }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { live: false, events: [{ kind: 'invalid', reason: 'event is not a JSON object', raw: truncate(text) }] }
  const ev = value as Record<string, unknown>
  const cursor = Number.isSafeInteger(ev.id) && (ev.id as number) >= 0 ? (ev.id as number) : undefined
  const live = typeof ev.record === 'object' && ev.record !== null && (ev.record as { live?: unknown }).live === true
  return { id: cursor, live, events: tapEvents(ev, cursor, text, collections) }
}

function tapEvents(ev: Record<string, unknown>, cursor: number | undefined, text: string, collections: ReadonlySet<string>): IngestEvent[] {
  const bad = (reason: string, extra: { did?: unknown; rkey?: string } = {}): IngestEvent[] => [
    { kind: 'invalid', cursor, reason, did: typeof extra.did === 'string' ? extra.did : undefined, rkey: extra.rkey, raw: truncate(text) },
  ]
  if (cursor === undefined) return bad('id is missing or not a non-negative integer')

  if (ev.type === 'record') {
    const r = ev.record as Record<string, unknown> | undefined
    if (typeof r !== 'object' || r === null) return bad('record event without a record object')
    if (typeof r.did !== 'string' || !DID.test(r.did)) return bad('record.did is missing or not a DID', r)
    const did = r.did
    const collection = r.collection
    if (typeof collection !== 'string' || !collections.has(collection)) return [{ kind: 'skip', cursor }]
    const rkey = r.rkey
    if (typeof rkey !== 'string' || rkey.length === 0) return bad('record.rkey is missing', r)
    if (typeof r.rev !== 'string' || r.rev.length === 0) return bad('record.rev is missing', { did, rkey })
    if (r.action === 'delete') return [{ kind: 'commit', cursor, did, rev: r.rev, ops: [{ action: 'delete', collection, rkey }] }]
    if (r.action !== 'create' && r.action !== 'update') return bad(`unknown record action ${JSON.stringify(r.action)}`, { did, rkey })
    if (typeof r.cid !== 'string' || r.cid.length === 0) return bad(`${r.action} without a cid`, { did, rkey })
    if (r.record === undefined) return bad(`${r.action} without a record`, { did, rkey })
    return [{ kind: 'commit', cursor, did, rev: r.rev, ops: [{ action: 'upsert', collection, rkey, cid: r.cid, record: r.record }] }]
  }
  if (ev.type === 'identity') {
    const i = ev.identity as Record<string, unknown> | undefined
    if (typeof i !== 'object' || i === null || typeof i.did !== 'string' || !DID.test(i.did)) return bad('identity event without a DID', i ?? {})
    if (typeof i.is_active !== 'boolean') return bad('identity event without is_active', i)
    const identity: IngestEvent = { kind: 'identity', cursor, did: i.did }
    if (typeof i.handle === 'string' && i.handle !== '') identity.handle = i.handle
    const account: IngestEvent = { kind: 'account', cursor, did: i.did, active: i.is_active }
    if (typeof i.status === 'string' && i.status !== 'active') account.status = i.status
    return [identity, account]
  }
  return bad(`unknown event type ${JSON.stringify(ev.type)}`)
}
