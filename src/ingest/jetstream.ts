import { MOOD_NSID } from '../sync/mood.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { Backoff } from '../retry.ts'
import { truncate, type IngestEvent, type InvalidEvent, type SavedPosition, type Source, type SourceStats } from './events.ts'
import { Watermark } from './watermark.ts'
import { websocketFeed } from './websocket-feed.ts'

export interface JetstreamSourceOptions {
  /** A Jetstream v1 `/subscribe` endpoint. */
  url: string
  /** The NSIDs to follow (`wantedCollections`); the server filters, and so does the parser. Moods by default. */
  collections?: readonly string[]
  log?: Logger
  /** How far back the server replays; an older cursor is clamped by it silently. */
  windowUs?: number
  /** Resume this far before the last event seen (Jetstream's advice for instance failover). */
  rewindUs?: number
  backoff?: Backoff
  highWater?: number
  /** A connection silent this long (no frame, no pong) is dropped and reopened (websocket-feed.ts). */
  idleTimeoutMs?: number
  /** How far behind an answered ping the position moves on a quiet stream (watermark.ts). */
  watermarkMarginMs?: number
  /** How far before the saved time to resume on another instance. */
  failoverRewindUs?: number
}

/** Jetstream's guidance for moving between instances: resume a few seconds earlier. */
const DEFAULT_FAILOVER_REWIND_US = 10_000_000

/** Public instances keep about 36 hours; assume a little less to warn before it bites. */
const DEFAULT_WINDOW_US = 24 * 3600 * 1_000_000

/**
 * Jetstream v2 tells its own sequence numbers (the `cursor` field of its events) from
 * `time_us` cursors by size, below and above this; so do we.
 */
export const SEQ_CURSOR_LIMIT = 1_000_000_000_000_000

/**
 * Jetstream: JSON events filtered to our collections by the server. The cursor is `time_us`
 * on classic Jetstream, and v2's own sequence (its events' `cursor` field) on v2, which
 * replays from the start of a stored block: earlier events come again, and applying them
 * again changes nothing.
 */
export class JetstreamSource implements Source {
  readonly id = 'jetstream'
  readonly instance: string
  readonly stats: SourceStats = { connected: false, reconnects: 0, framesReceived: 0 }
  readonly #opts: JetstreamSourceOptions
  readonly #log: Logger
  readonly #collections: ReadonlySet<string>

  constructor(opts: JetstreamSourceOptions) {
    this.#opts = opts
    this.#collections = new Set(opts.collections ?? [MOOD_NSID])
    this.#log = (opts.log ?? silentLogger).child({ component: 'jetstream' })
    this.instance = opts.url
  }

  async *events(signal: AbortSignal, from?: SavedPosition): AsyncGenerator<IngestEvent[]> {
    const windowUs = this.#opts.windowUs ?? DEFAULT_WINDOW_US
    const watermark = new Watermark({ marginMs: this.#opts.watermarkMarginMs, timeCursors: true })
    let gap: IngestEvent | undefined
    let cursor = from === undefined ? undefined : this.#resumeCursor(from)
    if (from !== undefined && cursor === undefined) {
      gap = { kind: 'gap', reason: `moved from ${from.instance} to ${this.instance} with a sequence cursor and no time to resume by`, requested: from.cursor }
    }
    const url = () => {
      const u = new URL(this.#opts.url)
      for (const nsid of this.#collections) u.searchParams.append('wantedCollections', nsid)
      watermark.connecting(cursor !== undefined)
      if (cursor !== undefined) {
        const resumeAt = Math.max(0, cursor - (this.#opts.rewindUs ?? 0))
        u.searchParams.set('cursor', String(resumeAt))
        const nowUs = Date.now() * 1000
        // Only a time cursor can be judged by age; a v2 sequence cursor too old is refused loudly.
        if (resumeAt >= SEQ_CURSOR_LIMIT && nowUs - resumeAt > windowUs) {
          // The server will clamp this cursor without a word: whatever came before is lost.
          gap = { kind: 'gap', reason: `cursor ${resumeAt} is older than the replay window (${formatWindow(windowUs)})`, requested: resumeAt }
        }
      }
      return u.toString()
    }

    const feed = { url, signal, stats: this.stats, log: this.#log, backoff: this.#opts.backoff, highWater: this.#opts.highWater, idleTimeoutMs: this.#opts.idleTimeoutMs, heartbeats: true }
    for await (const messages of websocketFeed(feed)) {
      const out: IngestEvent[] = []
      if (gap) {
        out.push(gap)
        gap = undefined
      }
      for (const message of messages) {
        if (message.heartbeat !== undefined) {
          const beat = watermark.heartbeat(message.heartbeat)
          if (beat?.cursor !== undefined) cursor = beat.cursor
          if (beat) out.push(beat)
          continue
        }
        // toString() with no encoding is Buffer's direct UTF-8 path; naming 'utf8' takes a slower
        // lookup (the no-op-sink loop went from 190-210k to 230-247k events/s: jetstream-path.md).
        const event = parseJetstreamEvent(message.data.toString(), this.#collections)
        if (event.cursor !== undefined) cursor = event.cursor
        watermark.delivered('emittedAt' in event ? event.emittedAt : undefined)
        out.push(event)
      }
      if (out.length > 0) yield out
    }
  }

  /**
   * The cursor to resume from. Another instance's `time_us` means the same moment here, and is
   * rewound a little (Jetstream's advice for failover: instances see events at slightly
   * different times); its v2 sequence numbers mean nothing here, so its time is used.
   */
  #resumeCursor(from: SavedPosition): number | undefined {
    if (from.instance === undefined || from.instance === this.instance) return from.cursor
    const timeUs = from.cursor >= SEQ_CURSOR_LIMIT ? from.cursor : from.timeUs
    if (timeUs === undefined) return undefined
    const cursor = Math.max(0, timeUs - (this.#opts.failoverRewindUs ?? DEFAULT_FAILOVER_REWIND_US))
    this.#log.info({ from: from.instance, to: this.instance, cursor }, 'another Jetstream instance than the saved position’s: resuming by time, rewound')
    return cursor
  }
}

function formatWindow(us: number): string {
  const s = us / 1e6
  return s >= 3600 ? `${Math.round(s / 3600)} h` : `${Math.round(s)} s`
}

const MOODS_ONLY: ReadonlySet<string> = new Set([MOOD_NSID])
const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]{1,2048}$/

/** An `invalid` event for a frame that parsed but is not an event we understand. */
function invalidEvent(ev: Record<string, unknown>, cursor: number | undefined, text: string, reason: string, rkey?: string): IngestEvent {
  const event: InvalidEvent = { kind: 'invalid', cursor, reason, did: typeof ev.did === 'string' ? ev.did : undefined }
  if (rkey !== undefined) event.rkey = rkey
  event.raw = truncate(text)
  return event
}

/** One Jetstream v1 text frame to an event. Never throws: bad input becomes `invalid`. */
export function parseJetstreamEvent(text: string, collections: ReadonlySet<string> = MOODS_ONLY): IngestEvent {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    return { kind: 'invalid', reason: `malformed JSON: ${(err as Error).message}`, raw: truncate(text) }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { kind: 'invalid', reason: 'event is not a JSON object', raw: truncate(text) }
  }
  const ev = value as Record<string, unknown>
  const timeUs = Number.isSafeInteger(ev.time_us) && (ev.time_us as number) > 0 ? (ev.time_us as number) : undefined
  const seq = Number.isSafeInteger(ev.cursor) && (ev.cursor as number) > 0 && (ev.cursor as number) < SEQ_CURSOR_LIMIT ? (ev.cursor as number) : undefined
  const cursor = timeUs === undefined ? undefined : (seq ?? timeUs)
  if (cursor === undefined) return invalidEvent(ev, cursor, text, 'time_us is missing or not a positive integer')
  if (typeof ev.did !== 'string' || !DID.test(ev.did)) return invalidEvent(ev, cursor, text, 'did is missing or not a DID')
  const did = ev.did
  const emittedAt = timeUs! / 1000

  switch (ev.kind) {
    case 'commit': {
      const c = ev.commit as Record<string, unknown> | undefined
      if (typeof c !== 'object' || c === null) return invalidEvent(ev, cursor, text, 'commit event without a commit object')
      const collection = c.collection
      if (typeof collection !== 'string' || !collections.has(collection)) return { kind: 'skip', cursor, emittedAt }
      const rkey = c.rkey
      if (typeof rkey !== 'string' || rkey.length === 0) return invalidEvent(ev, cursor, text, 'commit.rkey is missing')
      if (typeof c.rev !== 'string' || c.rev.length === 0) return invalidEvent(ev, cursor, text, 'commit.rev is missing', rkey)
      if (c.operation === 'delete') {
        return { kind: 'commit', cursor, did, rev: c.rev, ops: [{ action: 'delete', collection, rkey }], emittedAt }
      }
      if (c.operation !== 'create' && c.operation !== 'update') return invalidEvent(ev, cursor, text, `unknown commit operation ${JSON.stringify(c.operation)}`, rkey)
      if (typeof c.cid !== 'string' || c.cid.length === 0) return invalidEvent(ev, cursor, text, `${c.operation} without a cid`, rkey)
      if (c.record === undefined) return invalidEvent(ev, cursor, text, `${c.operation} without a record`, rkey)
      return { kind: 'commit', cursor, did, rev: c.rev, ops: [{ action: 'upsert', collection, rkey, cid: c.cid, record: c.record }], emittedAt }
    }
    case 'account': {
      const a = ev.account as Record<string, unknown> | undefined
      if (typeof a !== 'object' || a === null || typeof a.active !== 'boolean') return invalidEvent(ev, cursor, text, 'account event without account.active')
      const event: IngestEvent = { kind: 'account', cursor, did, active: a.active, emittedAt }
      if (typeof a.status === 'string') event.status = a.status
      return event
    }
    case 'sync': {
      // Jetstream v2: the repo's state was replaced without a diff (a #sync on the relay).
      const s = ev.sync as Record<string, unknown> | undefined
      if (typeof s !== 'object' || s === null) return invalidEvent(ev, cursor, text, 'sync event without a sync object')
      return { kind: 'resync', cursor, did, reason: 'jetstream sync event: state replaced without a diff', onlyIfKnown: true }
    }
    case 'identity': {
      const i = ev.identity as Record<string, unknown> | undefined
      const event: IngestEvent = { kind: 'identity', cursor, did, emittedAt }
      if (typeof i?.handle === 'string') event.handle = i.handle
      return event
    }
    default:
      return invalidEvent(ev, cursor, text, `unknown event kind ${JSON.stringify(ev.kind)}`)
  }
}
