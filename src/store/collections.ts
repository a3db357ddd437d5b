import type { ObjectId } from 'mongodb'

/** Collection names: the platform's own, and moodsync's (always `moodsync_`-prefixed). */
export const COLLECTIONS = {
  moods: 'moods',
  users: 'users',
  handles: '@handles',
  cursors: 'moodsync_cursors',
  quarantine: 'moodsync_quarantine',
  migrations: 'moodsync_migrations',
  gaps: 'moodsync_gaps',
  backfill: 'moodsync_backfill',
  repos: 'moodsync_repos',
  credentials: 'moodsync_credentials',
  forgotten: 'moodsync_forgotten',
  sessions: 'moodsync_sessions',
  identities: 'moodsync_identities',
  leases: 'moodsync_leases',
} as const

/** What moodsync keeps about a mood's ATProto record, under `moods.atproto`. */
export interface AtprotoState {
  /** Repo DID. Missing only on legacy documents until the fill-DIDs migration runs. */
  did?: string
  /** Missing only when the user has no ATProto account (state `no-account`). */
  rkey?: string
  /** CID of the record version this document reflects. */
  cid?: string
  /** Repo revision of the commit that produced this state; orders events per record. */
  rev?: string
  /**
   * Set while the account is deactivated, taken down or suspended (the status): the mood is
   * `deleted: true` for the platform's reads, and comes back when the account is active again.
   */
  hidden?: string
  /**
   * The writer's outbox state for moods posted through moodsync. `pending`: a change (`op`)
   * still to write; `written`: the PDS accepted it; `confirmed`: the indexer saw the record
   * come back with the same CID; `failed`: the PDS refused it for good (`error`); `no-account`:
   * the user has no ATProto account. Absent on moods that only came from the network.
   */
  state?: 'pending' | 'written' | 'confirmed' | 'failed' | 'no-account'
  op?: 'put' | 'delete'
  /** For an edit: the CID of the record version it replaces (compare-and-swap on the PDS). */
  swap?: string
  /** Bumped on every local change, so a slow write never marks a newer change as written. */
  version?: number
  attempts?: number
  nextAttemptAt?: Date
  error?: string
  /**
   * A mood that never had a record and never can as it is: the published schema refuses it
   * (`oversize`: over 5,000 UTF-8 bytes; `invalid`). Set by migration with `state: failed` and
   * the reason in `error`; `status` counts it as its own kind, not as drift.
   */
  refused?: string
  /** A write whose answer was lost: it may have been committed; check before writing again. */
  uncertain?: true
  writtenAt?: Date
  /**
   * A sender's claim on the pending change: who holds it (a token unique to one claim) and until
   * when. A change is sent only by the holder of a live claim, so the writer's immediate attempt
   * and the retry worker (or two workers) never both send it; a claim left by a process that
   * died lapses at `claimedUntil` and the change is sent again.
   */
  claimedBy?: string
  claimedUntil?: Date
}

/**
 * A document of a record collection: the platform's own fields (`F`) beside who owns it, the
 * platform's soft delete, and what moodsync keeps about its ATProto record.
 */
export type RecordDoc<F extends object> = {
  _id: ObjectId
  user: string | null
  deleted?: true
  atproto?: AtprotoState
} & F

/** What a mood says: the fields of the platform's `moods` documents that a record sets. */
export interface MoodFields {
  mood: string
  when: Date
}

/** A document of the platform's `moods` collection (CONTRACT.md), as moodsync extends it. */
export type MoodDoc = RecordDoc<MoodFields>

export interface UserDoc {
  _id: string
  atproto?: { did?: string; password?: string }
}

/** The latest handle seen for a DID (from identity events and DID documents); `@handles` is the platform's. */
export interface IdentityDoc {
  _id: string
  handle: string
  /** Where it was seen: an identity event of the stream, or a DID document read. */
  from: 'event' | 'did-document'
  updatedAt: Date
}

/** Who runs a singleton job (the outbox retry worker, the backfill worker) until when. */
export interface LeaseDoc {
  _id: string
  holder: string
  expiresAt: Date
  acquiredAt: Date
}

export interface CursorDoc {
  /** The logical source: `jetstream`, `firehose`, `tap` (before 0.2: `kind:url`). */
  _id: string
  /** Jetstream `time_us` or v2 sequence, firehose `seq`: all fit a double exactly. */
  cursor: number
  /** The instance (URL) the cursor came from. */
  instance?: string
  /** When the network emitted the event at `cursor` (µs), for resuming on another instance. */
  timeUs?: number
  updatedAt: Date
}

export interface MigrationDoc {
  _id: string
  appliedAt: Date
  result: Record<string, number>
}

export interface QuarantineDoc {
  /** Derived from what was quarantined, so a replay finds the same entry instead of adding one. */
  _id: string
  at: Date
  source: string
  reason: string
  /** The kind of refusal the collection's definition gave (moods: `no-ref`, `legacy-text`, `oversize`, `invalid`), when it gave one. */
  refusal?: string
  did?: string
  rkey?: string
  cid?: string
  cursor?: number
  /** The offending input as text (truncated): records may hold keys MongoDB-wire servers refuse. */
  raw?: string
}

/** A stretch of the stream that was missed (cursor too old, repo sync): needs a backfill. */
export interface GapDoc {
  _id: string
  at: Date
  source: string
  reason: string
  requested?: number
  cursor?: number
}

/** A repo that must be read whole to catch up (the backfill command drains these). */
export interface BackfillDoc {
  _id: string
  reason: string
  since: Date
  /** Set by the background backfill after a failed read: when to try again, and why it failed. */
  attempts?: number
  nextAttemptAt?: Date
  error?: string
}

/** How far a repo has been read whole: a later read at the same rev has nothing to do. */
export interface RepoStateDoc {
  _id: string
  rev: string
  /** The PDS that served it (from the DID document then): asked first whether the rev moved. */
  pds?: string
  via: 'car' | 'listRecords'
  records: number
  syncedAt: Date
}

/** A repo whose moods were erased (`forget`): echoes of older writes must not bring them back. */
export interface ForgottenDoc {
  _id: string
  user: string
  /** Microseconds since the epoch, comparable with a TID rev's timestamp. */
  atUs: number
}

/** A platform user's PDS password, sealed by the writer (AES-256-GCM). */
export interface CredentialDoc {
  _id: string
  did: string
  password: string
  updatedAt: Date
}

/** A platform user's PDS session tokens, sealed by the writer. */
export interface SessionDoc {
  _id: string
  tokens: string
  updatedAt: Date
}
