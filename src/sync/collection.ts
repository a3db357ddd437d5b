/**
 * The shared vocabulary of every record type moodsync indexes. A collection is a definition:
 * its NSID, how any value from the network becomes a valid value (or the reason it is not
 * one), and which document fields that value sets. The pipeline (sources, indexer, store,
 * backfill) is written once over definitions; `computer.aesthetic.mood` (./mood.ts) is the
 * first. Adding a record type means adding a definition, not touching the indexer.
 */
export interface CollectionDefinition<V = unknown, F extends object = object> {
  /** The record type, e.g. `computer.aesthetic.mood`. */
  readonly nsid: string
  /** The MongoDB collection its documents live in. */
  readonly mongoCollection: string
  /** Any value from the network: a valid value or the reason it is not one. Never throws. */
  parse(record: unknown): Parsed<V>
  /** The document fields the value sets (top level, beside `user`, `deleted` and `atproto`). */
  fields(value: V): F
  /** The MongoDB id the record names (`ref`), for records written MongoDB-first. */
  ref?(value: V): string | undefined
}

/** A refusal says why (`reason`, for people) and, where the definition knows one, its `kind` (for counts). */
export type Parsed<V> = { ok: true; value: V } | { ok: false; reason: string; kind?: string }

/** Any definition, whatever its value type: what the pipeline holds. */
export type AnyCollection = CollectionDefinition<any, object>

/** A record created or updated in a commit, as the network sent it: unvalidated. */
export interface RecordWrite {
  action: 'upsert'
  collection: string
  rkey: string
  cid: string
  record: unknown
}

export interface RecordDelete {
  action: 'delete'
  collection: string
  rkey: string
}

/** One repo commit's operations on the collections we index, at its revision. */
export interface RepoCommit {
  did: string
  rev: string
  ops: (RecordWrite | RecordDelete)[]
  /** The source's position of the commit, when it came from a stream. */
  cursor?: number
}
