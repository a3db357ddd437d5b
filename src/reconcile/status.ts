import { addCounts, countsOf, driftOf, emptyCounts, type StatusCounts } from './compare.ts'
import { emptyCoverage, type Coverage } from './coverage.ts'
import { forEachSubject, nameHandles, type SubjectRunOptions } from './each-subject.ts'
import { inspect, type ReconcileContext } from './inspect.ts'
import type { Subject } from '../store/users.ts'

export interface SubjectStatus extends Subject {
  counts: StatusCounts
  drift: number
  /** Set when the account is not active (its moods should all be hidden). */
  inactive?: string
  /** Duplicate groups, for the operator: which record is kept, which would go. */
  duplicates?: { ref: string; keep: string; drop: string[] }[]
  /** The DID's handle: the DID document's as just read, else the latest moodsync has seen. */
  handle?: string
}

/**
 * What was found in the subjects checked (`subjects`, `counts`, `drift`) and how far the run
 * got (`Coverage`: checked of total, interrupted, the ones that could not be checked). In sync
 * means `drift === 0` with every subject checked, never `drift === 0` alone.
 */
export interface StatusReport extends Coverage {
  subjects: SubjectStatus[]
  /** The subjects' counts added up. */
  counts: StatusCounts
  drift: number
}

/** Compares every subject; a subject whose repo cannot be read is unchecked, not drift. */
export async function status(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions = {}): Promise<StatusReport> {
  const report: StatusReport = { ...emptyCoverage(subjects.length), subjects: [], counts: emptyCounts(), drift: 0 }
  await forEachSubject(ctx, 'status', subjects, { concurrency: 4, ...opts }, report, async (subject) => {
    const { diff, inactive, snapshot } = await inspect(ctx, subject)
    const counts = countsOf(diff)
    const handle = snapshot?.handle === undefined ? {} : { handle: snapshot.handle }
    report.subjects.push({ ...subject, ...handle, counts, drift: driftOf(counts), ...(inactive ? { inactive } : {}), ...(diff.duplicates.length > 0 ? { duplicates: diff.duplicates } : {}) })
    addCounts(report.counts, counts)
    return diff.inSync + driftOf(counts) + diff.noAccount
  })
  await nameHandles(ctx, report.subjects)
  report.subjects.sort((a, b) => (a.user ?? a.did ?? '').localeCompare(b.user ?? b.did ?? ''))
  report.drift = driftOf(report.counts)
  return report
}

/** Every subject was checked and none drifted. */
export function isInSync(report: StatusReport): boolean {
  return report.drift === 0 && report.checked === report.total
}
