import { addCounts, countsOf, driftOf, emptyCounts, type StatusCounts } from './compare.ts'
import { emptyFailures, type Failures } from './failures.ts'
import { forEachSubject, inspect, type ReconcileContext, type SubjectRunOptions } from './inspect.ts'
import type { Subject } from '../store/users.ts'

export interface SubjectStatus extends Subject {
  counts: StatusCounts
  drift: number
  /** Set when the account is not active (its moods should all be hidden). */
  inactive?: string
  /** Duplicate groups, for the operator: which record is kept, which would go. */
  duplicates?: { ref: string; keep: string; drop: string[] }[]
}

export interface StatusReport {
  subjects: SubjectStatus[]
  total: StatusCounts
  drift: number
  failures: Failures
}

/** Compares every subject; a subject whose repo cannot be read is a failure, not drift. */
export async function status(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions = {}): Promise<StatusReport> {
  const report: StatusReport = { subjects: [], total: emptyCounts(), drift: 0, failures: emptyFailures() }
  await forEachSubject(ctx, 'status', subjects, { concurrency: 4, ...opts }, report.failures, async (subject) => {
    const { diff, inactive } = await inspect(ctx, subject)
    const counts = countsOf(diff)
    report.subjects.push({ ...subject, counts, drift: driftOf(counts), ...(inactive ? { inactive } : {}), ...(diff.duplicates.length > 0 ? { duplicates: diff.duplicates } : {}) })
    addCounts(report.total, counts)
    return diff.inSync + driftOf(counts) + diff.noAccount
  })
  report.subjects.sort((a, b) => (a.user ?? a.did ?? '').localeCompare(b.user ?? b.did ?? ''))
  report.drift = driftOf(report.total)
  return report
}
