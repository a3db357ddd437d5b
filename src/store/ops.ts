import type { MoodFields } from './collections.ts'

/**
 * A record's state at a repo revision, as the store writes it: create and update alike. The
 * collection's definition (src/sync/) has already validated the record and mapped it to the
 * document fields it sets; the store only orders, compares and writes.
 */
export interface UpsertOp<F extends object = MoodFields> {
  kind: 'upsert'
  did: string
  rkey: string
  rev: string
  cid: string
  /** The document's own fields (beside `user`, `deleted` and `atproto`). */
  fields: F
  /** The MongoDB document id the record names, for records written MongoDB-first. */
  ref?: string
  /** The platform user owning `did`, or null for a DID that is not a platform user's. */
  user: string | null
}

export interface DeleteOp {
  kind: 'delete'
  did: string
  rkey: string
  rev: string
}

export type RecordOp<F extends object = MoodFields> = UpsertOp<F> | DeleteOp
/** The mood collection's ops (the default). */
export type MoodOp = RecordOp<MoodFields>

export interface ApplyResult {
  inserted: number
  updated: number
  /** Documents claimed through `ref` (written MongoDB-first, now confirmed by their record). */
  attached: number
  deleted: number
  unchanged: number
  /** Ops older than the state already stored: skipped, so replays never roll a record back. */
  stale: number
  /** Writes of ours that the network echoed back: the outbox entry is now confirmed. */
  confirmed: number
  /** Ops for a record with a local change not yet written: the local change is newer. */
  pending: number
}

export function emptyApplyResult(): ApplyResult {
  return { inserted: 0, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0, confirmed: 0, pending: 0 }
}

export function addApplyResult(into: ApplyResult, more: ApplyResult): ApplyResult {
  for (const key of Object.keys(into) as (keyof ApplyResult)[]) into[key] += more[key]
  return into
}
