import type { DeleteOp } from '../store/records.ts'
import { NoCredentialsError } from '../errors.ts'
import type { DuplicateGroup } from './compare.ts'
import { emptyCoverage, type Coverage } from './coverage.ts'
import { forEachSubject, type SubjectRunOptions } from './each-subject.ts'
import { inspect, type ReconcileContext } from './inspect.ts'
import type { Subject } from '../store/users.ts'

/** What dedupe found and deleted in the repos it handled, and how far it got (`Coverage`). */
export interface DedupeReport extends Coverage {
  deleteRequested: boolean
  /** Refs with more than one record. */
  groups: number
  /** Records beyond the one kept in each group. */
  duplicates: number
  /** Records deleted (only with --delete). */
  deleted: number
  /** MongoDB moods that mirrored a deleted duplicate, now marked deleted. */
  moodsMarkedDeleted: number
  subjects: (Subject & { groups: DuplicateGroup[] })[]
}

/**
 * Finds records sharing a `ref` (an interrupted migration's leftovers) and, with `delete`,
 * deletes all but the one MongoDB points to (else the oldest) through applyWrites batches paid
 * from the account's budget, then marks the moods that mirrored them deleted.
 */
export async function dedupe(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions & { delete?: boolean } = {}): Promise<DedupeReport> {
  const withRepo = subjects.filter((s) => s.did !== null)
  const report: DedupeReport = { ...emptyCoverage(withRepo.length), deleteRequested: opts.delete ?? false, groups: 0, duplicates: 0, deleted: 0, moodsMarkedDeleted: 0, subjects: [] }
  // Repos run concurrently: each count is awaited into a local before it is added (see forEachSubject).
  await forEachSubject(ctx, 'dedupe', withRepo, opts, report, async (subject) => {
    const { diff, snapshot, records } = await inspect(ctx, subject)
    // An inactive account cannot be written to; its records are not readable either (no groups).
    const groups = diff.duplicates
    if (groups.length === 0) return records.length
    const drop = groups.flatMap((g) => g.drop)
    report.groups += groups.length
    report.duplicates += drop.length
    report.subjects.push({ ...subject, groups })
    if (!opts.delete) return records.length
    if (!ctx.writer || subject.user === null) throw new NoCredentialsError(`${subject.did} belongs to no platform user: moodsync has no credentials to delete its records`)
    const did = snapshot!.did
    const res = await ctx.writer.deleteRecords({ user: subject.user, did, rkeys: drop })
    report.deleted += res.deleted
    const rev = res.rev ?? (await ctx.reader.latestRev(did))
    const ops: DeleteOp[] = drop.map((rkey) => ({ kind: 'delete', did, rkey, rev }))
    const { deleted } = await ctx.store.moods.apply(ops)
    report.moodsMarkedDeleted += deleted
    return records.length
  })
  report.subjects.sort((a, b) => (a.user ?? a.did ?? '').localeCompare(b.user ?? b.did ?? ''))
  return report
}
