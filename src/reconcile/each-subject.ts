import type { Subject } from '../store/users.ts'
import { addUnchecked, type Coverage } from './coverage.ts'
import type { ReconcileContext } from './inspect.ts'
import { forEachConcurrent } from './pool.ts'
import { Progress } from './progress.ts'

export interface SubjectRunOptions {
  concurrency?: number
  signal?: AbortSignal
  /** Where progress lines go (stderr for the CLI). */
  progress?: NodeJS.WritableStream
}

/**
 * Runs `work` for every subject, a bounded number at a time, with progress, and records in
 * `coverage` how far it got: a subject's failure is counted by kind and named, and the others
 * go on. `work` returns the moods it looked at.
 *
 * Several subjects run at once, so every counter here (and in `work`) is updated only after
 * its `await` has settled: `x += await f()` reads `x` before the await and writes back a stale
 * sum, losing what the other subjects added meanwhile.
 */
export async function forEachSubject(ctx: ReconcileContext, label: string, subjects: readonly Subject[], opts: SubjectRunOptions, coverage: Coverage, work: (subject: Subject) => Promise<number>): Promise<void> {
  const progress = opts.progress ? new Progress(opts.progress, label, { unit: 'users' }) : undefined
  const counts = () => ({ done: coverage.checked + coverage.unchecked.length, total: coverage.total, failed: coverage.unchecked.length, records })
  let records = 0
  await forEachConcurrent(subjects, opts.concurrency ?? 2, opts.signal, async (subject) => {
    try {
      const moods = await work(subject)
      records += moods
      coverage.checked++
    } catch (err) {
      // Cut short by the interruption (a retry's wait, a read abandoned): not checked, but not
      // a failure of that user's repo either; the next run checks it.
      if (opts.signal?.aborted) return
      addUnchecked(coverage, subject, err, ctx.log)
    }
    progress?.update(counts())
  })
  coverage.interrupted = opts.signal?.aborted === true && coverage.checked + coverage.unchecked.length < coverage.total
  progress?.finish(counts())
  await nameHandles(ctx, coverage.unchecked)
}

/**
 * Sets the latest known handle beside each DID, so reports name people and not only DIDs.
 * Only a courtesy: when MongoDB cannot say (it may be why the run failed), the DIDs stand alone.
 */
export async function nameHandles(ctx: Pick<ReconcileContext, 'store' | 'log'>, items: { did: string | null; handle?: string }[]): Promise<void> {
  const missing = items.filter((i) => i.did !== null && i.handle === undefined).map((i) => i.did!)
  if (missing.length === 0) return
  let handles: Map<string, string>
  try {
    handles = await ctx.store.identities.handlesOf(missing)
  } catch (err) {
    ctx.log.debug({ err }, 'could not look up handles for the report')
    return
  }
  for (const item of items) if (item.did !== null && item.handle === undefined && handles.has(item.did)) item.handle = handles.get(item.did)!
}
