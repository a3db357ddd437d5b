import type { MoodDoc } from '../store/collections.ts'
import type { UpsertOp } from '../store/ops.ts'
import { oversize } from '../sync/mood.ts'

/** Records sharing one `ref`: the one kept and the ones `dedupe --delete` removes. */
export interface DuplicateGroup {
  ref: string
  keep: string
  drop: string[]
}

/**
 * One subject (a platform user, or a DID that is no user's) compared record by record with its
 * MongoDB documents. ATProto is the truth for what exists and what it says.
 */
export interface SubjectDiff {
  did: string | null
  user: string | null
  inSync: number
  /** Records MongoDB lacks, has deleted, or hides (restore them from ATProto). */
  atprotoOnly: UpsertOp[]
  /** The part of `atprotoOnly` whose `ref` names a mood that never learnt its rkey (link them). */
  links: UpsertOp[]
  /** Records whose MongoDB mood says something else (take the record's). */
  differs: UpsertOp[]
  /** Live moods whose record was deleted on ATProto (mark them deleted). */
  mongoOnly: MoodDoc[]
  /** Live moods that never had a record (push them through the outbox). */
  unmigrated: MoodDoc[]
  duplicates: DuplicateGroup[]
  /** Outbox entries not confirmed by their record: pending, failed, or written and not visible. */
  unconfirmed: MoodDoc[]
  /** Written moods whose record is there with the CID we wrote: in sync, to mark confirmed. */
  confirmable: UpsertOp[]
  /** In sync, but linked by the old scripts without the record's CID and rev: to record them. */
  unrecorded: UpsertOp[]
  /** Live moods of a user without an ATProto account: nothing to sync until they get one. */
  noAccount: number
  /** Records that fail the lexicon for another reason than the kinds below (quarantined, never applied). */
  invalid: number
  /** Records with neither `ref` nor the legacy `mongoId` (quarantined). */
  noRef: number
  /** Legacy records with `text` instead of `mood` (quarantined; `moodsync normalize` rewrites those that name their mood). */
  legacyText: number
  /** Records whose mood is over the published 5,000 bytes (quarantined). */
  oversize: number
  /** Valid records that name their mood by the legacy `mongoId` (counted in their kind too; `moodsync normalize` rewrites them). */
  legacyMongoId: number
  /** Moods MongoDB holds that the published schema refuses (migration marked them): over 5,000 bytes... */
  tooLong: MoodDoc[]
  /** ...or refused for another reason. Neither is drift: no command can write them as they are. */
  refused: MoodDoc[]
}

/** How many of a repo's records fall outside the valid ones, by kind (the refusals of `parseMood`). */
export interface RecordKinds {
  invalid: number
  noRef?: number
  legacyText?: number
  oversize?: number
  legacyMongoId?: number
  /** The refused records' keys: a mood mirroring one is not "record gone" (the record is there, invalid). */
  rejectedRkeys?: readonly string[]
}

export const DRIFT_KINDS = ['atprotoOnly', 'mongoOnly', 'unmigrated', 'differs', 'duplicates', 'unconfirmed'] as const
export type DriftKind = (typeof DRIFT_KINDS)[number]

/** Kinds that are not drift: nothing `repair` can do about them (normalize rewrites the legacy ones). */
export const OTHER_KINDS = ['noAccount', 'invalid', 'noRef', 'legacyText', 'oversize', 'legacyMongoId', 'tooLong', 'refused'] as const

export type StatusCounts = Record<'inSync' | DriftKind | (typeof OTHER_KINDS)[number], number>

export function countsOf(diff: SubjectDiff): StatusCounts {
  return {
    inSync: diff.inSync,
    atprotoOnly: diff.atprotoOnly.length,
    mongoOnly: diff.mongoOnly.length,
    unmigrated: diff.unmigrated.length,
    differs: diff.differs.length,
    duplicates: diff.duplicates.reduce((n, g) => n + g.drop.length, 0),
    unconfirmed: diff.unconfirmed.length,
    noAccount: diff.noAccount,
    invalid: diff.invalid,
    noRef: diff.noRef,
    legacyText: diff.legacyText,
    oversize: diff.oversize,
    legacyMongoId: diff.legacyMongoId,
    tooLong: diff.tooLong.length,
    refused: diff.refused.length,
  }
}

export function emptyCounts(): StatusCounts {
  return { inSync: 0, atprotoOnly: 0, mongoOnly: 0, unmigrated: 0, differs: 0, duplicates: 0, unconfirmed: 0, noAccount: 0, invalid: 0, noRef: 0, legacyText: 0, oversize: 0, legacyMongoId: 0, tooLong: 0, refused: 0 }
}

export function addCounts(into: StatusCounts, more: StatusCounts): StatusCounts {
  for (const key of Object.keys(into) as (keyof StatusCounts)[]) into[key] += more[key]
  return into
}

export function driftOf(counts: StatusCounts): number {
  return DRIFT_KINDS.reduce((n, kind) => n + counts[kind], 0)
}

const OUTBOX_OPEN = new Set(['pending', 'failed', 'written'])

/**
 * Compares a repo's valid records (as upsert ops at the repo's rev) with the subject's
 * documents (deleted ones included). Pure: the same inputs always give the same diff.
 */
export function compareSubject(input: { did: string | null; user: string | null; records: readonly UpsertOp[]; docs: readonly MoodDoc[] } & RecordKinds): SubjectDiff {
  const diff: SubjectDiff = {
    did: input.did, user: input.user, inSync: 0, atprotoOnly: [], links: [], differs: [], mongoOnly: [], unmigrated: [], duplicates: [], unconfirmed: [], confirmable: [], unrecorded: [], noAccount: 0,
    invalid: input.invalid, noRef: input.noRef ?? 0, legacyText: input.legacyText ?? 0, oversize: input.oversize ?? 0, legacyMongoId: input.legacyMongoId ?? 0, tooLong: [], refused: [],
  }
  if (input.did === null) {
    diff.noAccount = input.docs.filter((doc) => !doc.deleted).length
    return diff
  }

  const byRkey = new Map<string, MoodDoc>()
  const byId = new Map<string, MoodDoc>()
  for (const doc of input.docs) {
    byId.set(doc._id.toHexString(), doc)
    const rkey = doc.atproto?.rkey
    // Two documents for one record (a legacy conflict): the live one speaks for it.
    if (rkey !== undefined && (!byRkey.has(rkey) || byRkey.get(rkey)!.deleted)) byRkey.set(rkey, doc)
  }

  diff.duplicates = findDuplicates(input.records, byId)
  const dropped = new Set(diff.duplicates.flatMap((g) => g.drop))
  const handled = new Set<MoodDoc>()

  for (const op of input.records) {
    const doc = byRkey.get(op.rkey)
    if (dropped.has(op.rkey)) {
      if (doc) handled.add(doc) // counted as the duplicate it mirrors
      continue
    }
    if (!doc) {
      const target = op.ref === undefined ? undefined : byId.get(op.ref)
      // A document the record names but that never learnt its rkey (an interrupted write).
      if (target && target.atproto?.rkey === undefined && !target.deleted) {
        handled.add(target)
        diff.links.push(op)
      }
      diff.atprotoOnly.push(op)
      continue
    }
    handled.add(doc)
    const at = doc.atproto
    const state = at?.state
    if (state === 'pending' || state === 'failed') {
      diff.unconfirmed.push(doc)
    } else if (doc.deleted) {
      diff.atprotoOnly.push(op)
    } else if (state === 'written' && at?.cid === op.cid) {
      diff.confirmable.push(op)
      diff.inSync++
    } else if (state === 'written') {
      diff.unconfirmed.push(doc)
    } else if (sameContent(doc, op)) {
      diff.inSync++
      // Linked by the old scripts (an rkey, no CID): recording the CID and rev lets every later
      // read of this record be a no-op.
      if (at?.cid !== op.cid) diff.unrecorded.push(op)
    } else {
      diff.differs.push(op)
    }
  }

  const rejected = new Set(input.rejectedRkeys ?? [])
  for (const doc of input.docs) {
    if (handled.has(doc)) continue
    const at = doc.atproto
    if (doc.deleted) {
      // A delete of ours still in the outbox; the record is already gone, so it only needs settling.
      if (at?.state === 'pending' || at?.state === 'failed') diff.unconfirmed.push(doc)
      continue
    }
    if (at?.refused !== undefined && at.rkey === undefined) {
      // Refused by migration; a mood since shortened in MongoDB can be written after all.
      if (at.refused !== 'oversize') diff.refused.push(doc)
      else if (oversize(doc.mood) !== undefined) diff.tooLong.push(doc)
      else diff.unmigrated.push(doc)
    } else if (at?.state !== undefined && OUTBOX_OPEN.has(at.state)) diff.unconfirmed.push(doc)
    else if (at?.rkey === undefined || at.state === 'no-account') diff.unmigrated.push(doc)
    // Its record is there but refused (a legacy `text` record): counted by the record's kind, never deleted.
    else if (rejected.has(at.rkey)) continue
    else diff.mongoOnly.push(doc)
  }
  return diff
}

/**
 * Records sharing a `ref`. The one kept is the record MongoDB's document points to; failing
 * that, the oldest (TIDs sort by creation time).
 */
function findDuplicates(records: readonly UpsertOp[], byId: ReadonlyMap<string, MoodDoc>): DuplicateGroup[] {
  const byRef = new Map<string, string[]>()
  for (const op of records) {
    if (op.ref === undefined) continue
    byRef.set(op.ref, [...(byRef.get(op.ref) ?? []), op.rkey])
  }
  const groups: DuplicateGroup[] = []
  for (const [ref, rkeys] of byRef) {
    if (rkeys.length < 2) continue
    const sorted = [...rkeys].sort()
    const pointed = byId.get(ref)?.atproto?.rkey
    const keep = pointed !== undefined && sorted.includes(pointed) ? pointed : sorted[0]!
    groups.push({ ref, keep, drop: sorted.filter((rkey) => rkey !== keep) })
  }
  return groups
}

function sameContent(doc: MoodDoc, op: UpsertOp): boolean {
  const user = op.user ?? doc.user
  return doc.mood === op.fields.mood && doc.when instanceof Date && doc.when.getTime() === op.fields.when.getTime() && doc.user === user
}
