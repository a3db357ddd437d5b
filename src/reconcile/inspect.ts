import { RepoUnavailableError, type RepoReader, type RepoSnapshot } from '../atproto/repo-reader.ts'
import type { Logger } from '../logger.ts'
import type { Database } from '../store/database.ts'
import type { UpsertOp } from '../store/ops.ts'
import type { Subject } from '../store/users.ts'
import { isInactive } from '../sync/accounts.ts'
import { isLegacyMongoId, moodCollection } from '../sync/mood.ts'
import type { QuarantineEntry } from '../store/quarantine.ts'
import { snapshotOps } from '../sync/records.ts'
import type { Writer } from '../writer/writer.ts'
import { compareSubject, type RecordKinds, type SubjectDiff } from './compare.ts'
import type { RepoSync } from './repo-sync.ts'

/** What the reconcile commands share: MongoDB, the repo reader, and (for writes) the writer. */
export interface ReconcileContext {
  store: Database
  reader: RepoReader
  sync: RepoSync
  writer?: Writer
  log: Logger
}

export interface Inspection {
  subject: Subject
  diff: SubjectDiff
  /** The repo as read; absent for a user without an account. */
  snapshot?: RepoSnapshot
  /** Its valid records, as store ops. */
  records: UpsertOp[]
  /** Its records the lexicon refuses, with the reason (as quarantine entries, not stored here). */
  rejected?: QuarantineEntry[]
  /** The host says the account is not active (deactivated, takendown, suspended): its moods should be hidden. */
  inactive?: string
}

/** Reads the subject's repo (verified) and documents, and compares them. */
export async function inspect(ctx: ReconcileContext, subject: Subject): Promise<Inspection> {
  const moods = ctx.store.moods
  if (subject.did === null) {
    return { subject, records: [], diff: compareSubject({ ...subject, records: [], invalid: 0, docs: await moods.ofSubject(subject) }) }
  }
  let snapshot: RepoSnapshot
  try {
    snapshot = await ctx.reader.read(subject.did)
  } catch (err) {
    if (!(err instanceof RepoUnavailableError) || !isInactive(err.kind)) throw err
    // Nothing should show while the account is inactive: any visible mood is drift (to hide),
    // and nothing can be written to it until it is back.
    const docs = (await moods.ofSubject(subject)).filter((doc) => doc.atproto?.rkey !== undefined)
    const diff = compareSubject({ ...subject, records: [], invalid: 0, docs })
    return { subject, records: [], inactive: err.kind, diff: { ...diff, unmigrated: [], unconfirmed: [] } }
  }
  const forgotten = (await ctx.store.forgotten.since([subject.did])).get(subject.did)
  const { ops, rejected } = snapshotOps(moodCollection, snapshot, subject.user, forgotten)
  // Read after the repo: a mood posted in between then looks unconfirmed, never deleted.
  const docs = await moods.ofSubject(subject)
  const valid = new Set(ops.map((op) => op.rkey))
  const legacyMongoId = snapshot.records.filter((r) => valid.has(r.rkey) && isLegacyMongoId(r.value)).length
  return { subject, snapshot, records: ops, rejected, diff: compareSubject({ ...subject, records: ops, ...recordKinds(rejected), legacyMongoId, docs }) }
}

/** The refused records counted by kind (`parseMood`'s refusals); any other refusal is `invalid`. */
export function recordKinds(rejected: readonly QuarantineEntry[]): RecordKinds {
  const kinds: RecordKinds = { invalid: 0, noRef: 0, legacyText: 0, oversize: 0, rejectedRkeys: rejected.flatMap((e) => (e.rkey === undefined ? [] : [e.rkey])) }
  for (const entry of rejected) {
    if (entry.refusal === 'no-ref') kinds.noRef!++
    else if (entry.refusal === 'legacy-text') kinds.legacyText!++
    else if (entry.refusal === 'oversize') kinds.oversize!++
    else kinds.invalid++
  }
  return kinds
}
