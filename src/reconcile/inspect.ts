import { RepoUnavailableError, type RepoReader, type RepoSnapshot } from '../atproto/repo-reader.ts'
import type { Logger } from '../logger.ts'
import type { Database } from '../store/database.ts'
import type { UpsertOp } from '../store/ops.ts'
import type { Subject } from '../store/users.ts'
import { isInactive } from '../sync/accounts.ts'
import { moodCollection } from '../sync/mood.ts'
import { snapshotOps } from '../sync/records.ts'
import type { Writer } from '../writer/writer.ts'
import { compareSubject, type SubjectDiff } from './compare.ts'
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
  return { subject, snapshot, records: ops, diff: compareSubject({ ...subject, records: ops, invalid: rejected.length, docs }) }
}
