import type { ObjectId } from 'mongodb'

/** Collection names: the platform's own, and moodsync's (always `moodsync_`-prefixed). */
export const COLLECTIONS = {
  moods: 'moods',
  users: 'users',
  handles: '@handles',
  cursors: 'moodsync_cursors',
  quarantine: 'moodsync_quarantine',
  migrations: 'moodsync_migrations',
} as const

/** What moodsync keeps about a mood's ATProto record, under `moods.atproto`. */
export interface AtprotoState {
  /** Repo DID. Missing only on legacy documents until the fill-DIDs migration runs. */
  did?: string
  rkey: string
  /** CID of the record version this document reflects. */
  cid?: string
  /** Repo revision of the commit that produced this state; orders events per record. */
  rev?: string
}

/** A document of the platform's `moods` collection (CONTRACT.md), as moodsync extends it. */
export interface MoodDoc {
  _id: ObjectId
  user: string | null
  mood: string
  when: Date
  deleted?: true
  atproto?: AtprotoState
}

export interface UserDoc {
  _id: string
  atproto?: { did?: string; password?: string }
}

export interface CursorDoc {
  _id: string
  /** Jetstream `time_us` or firehose `seq`: both fit a double exactly. */
  cursor: number
  updatedAt: Date
}

export interface MigrationDoc {
  _id: string
  appliedAt: Date
  result: Record<string, number>
}
