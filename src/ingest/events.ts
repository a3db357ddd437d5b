import type { SavedPosition } from '../store/cursors.ts'
import type { RecordDelete, RecordWrite } from '../sync/collection.ts'

export type { RecordDelete, RecordWrite } from '../sync/collection.ts'
export type { SavedPosition } from '../store/cursors.ts'
export { RAW_LIMIT, truncate } from '../sync/records.ts'

/**
 * What every source yields, in stream order. `cursor` is the source's own position (Jetstream
 * `time_us`, firehose `seq`); resuming from an event's cursor replays that event and what
 * follows. Sources only parse the wire; validation and storage happen downstream.
 */
export type IngestEvent = CommitEvent | AccountEvent | IdentityEvent | InvalidEvent | GapEvent | ResyncEvent | SkipEvent | HeartbeatEvent

/** One repo commit's operations on the collections we index (Jetstream sends one op per event). */
export interface CommitEvent {
  kind: 'commit'
  cursor: number
  did: string
  rev: string
  ops: (RecordWrite | RecordDelete)[]
  /** When the network emitted it (ms since epoch), for lag. */
  emittedAt?: number
}

export type AccountStatus = 'deactivated' | 'takendown' | 'suspended' | 'deleted' | 'desynchronized' | 'throttled' | string

export interface AccountEvent {
  kind: 'account'
  cursor: number
  did: string
  active: boolean
  status?: AccountStatus
  emittedAt?: number
}

export interface IdentityEvent {
  kind: 'identity'
  cursor: number
  did: string
  handle?: string
  emittedAt?: number
}

/** A frame or op that could not be understood: quarantined, never fatal. */
export interface InvalidEvent {
  kind: 'invalid'
  /** Absent when the frame was too broken to carry one. */
  cursor?: number
  reason: string
  did?: string
  rkey?: string
  cid?: string
  /** The offending input, truncated, as text. */
  raw?: string
}

/** The source could not resume where it was asked to: events were missed. */
export interface GapEvent {
  kind: 'gap'
  cursor?: number
  reason: string
  /** The cursor we asked for, when the gap is about resuming. */
  requested?: number
}

/** One repo announced its whole state (`#sync`, e.g. on reactivation): read it again. */
export interface ResyncEvent {
  kind: 'resync'
  cursor: number
  did: string
  reason: string
  /**
   * Read the repo again only if we already index it or it is a platform user's: Jetstream v2
   * cannot say whether a `sync` is a new account's empty repo, and the network makes thousands.
   */
  onlyIfKnown?: boolean
}

/** An event with nothing for us (another collection) that still moves the cursor. */
export interface SkipEvent {
  kind: 'skip'
  cursor: number
  emittedAt?: number
  /** How many frames it stands for (a run of foreign commits is one skip), 1 when absent. */
  count?: number
}

/**
 * The live connection answered a ping with nothing of ours waiting: the source has delivered
 * everything the network emitted up to `emittedAt`, so a quiet stream is not a growing lag.
 * `cursor`, when set, is a position safe to resume from (a watermark a margin behind), so a
 * quiet week does not age the saved position past the server's replay window.
 */
export interface HeartbeatEvent {
  kind: 'heartbeat'
  emittedAt: number
  cursor?: number
}

/**
 * A source of events: an async iterable of arrays (whatever one read of the socket held, in
 * stream order, never empty) that ends when `signal` aborts. Arrays, not single events: at a
 * relay's rate the hop through async generators per event costs more than the event.
 */
export interface Source {
  /**
   * The logical source (`jetstream`, `firehose`, `tap`): one saved position each, so moving
   * to another instance of the same kind resumes from where the last one was.
   */
  readonly id: string
  /** The instance followed (its URL). */
  readonly instance: string
  events(signal: AbortSignal, from?: SavedPosition): AsyncIterable<IngestEvent[]>
  readonly stats: SourceStats
  /**
   * Told of each batch once it is durable in MongoDB, for a source whose server keeps the
   * position and waits for acknowledgements (Tap) rather than resuming from our cursor.
   */
  acknowledge?(events: readonly IngestEvent[]): void
}

export interface SourceStats {
  connected: boolean
  /** Since when the source is disconnected (ms since epoch), when it is. */
  disconnectedSince?: number
  reconnects: number
  framesReceived: number
  /** Why the last connection was dropped by us, when it was (a silent line). */
  lastDropReason?: string
}
