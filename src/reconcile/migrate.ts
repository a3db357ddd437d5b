import { InactiveAccountError } from '../errors.ts'
import type { FlushResult } from '../writer/writer.ts'
import { emptyCoverage, type Coverage } from './coverage.ts'
import { forEachSubject, type SubjectRunOptions } from './each-subject.ts'
import { inspect, type ReconcileContext } from './inspect.ts'
import { confirmWritten, flushOutbox } from './settle.ts'
import type { Subject } from '../store/users.ts'

/** What migrate did in the users it handled, and how far it got (`Coverage`). */
export interface MigrateReport extends Coverage {
  dryRun: boolean
  /** Moods whose record already existed (it names them by `ref`): linked, not written again. */
  linked: number
  /** Moods queued in the outbox for a first write. */
  queued: number
  /** Moods already in the outbox (an interrupted run): written now with the rest. */
  resumed: number
  /** Moods the lexicon refuses (too long, bad date): marked failed with the reason. */
  invalid: number
  flushed: FlushResult
  confirmed: number
  /** Users with moods but no ATProto account: nothing to migrate to. */
  noAccount: number
}

/**
 * Pushes every mood that has no record yet through the writer's outbox (applyWrites batches,
 * within the budget). The repo is read first, so a mood whose record an earlier, interrupted
 * migration already wrote is linked to it instead of written twice. Resumable and idempotent:
 * queued moods are written on the next run; a second run finds nothing to do.
 */
export async function migrate(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions & { dryRun?: boolean } = {}): Promise<MigrateReport> {
  const dryRun = opts.dryRun ?? false
  const users = subjects.filter((s) => s.user !== null)
  const report: MigrateReport = { ...emptyCoverage(users.length), dryRun, linked: 0, queued: 0, resumed: 0, invalid: 0, flushed: { written: 0, deferred: 0, failed: 0, retried: 0 }, confirmed: 0, noAccount: 0 }
  const writer = ctx.writer
  // Users run concurrently: each count is awaited into a local before it is added (see forEachSubject).
  await forEachSubject(ctx, dryRun ? 'migrate plan' : 'migrate', users, opts, report, async (subject) => {
    const { diff, records, inactive } = await inspect(ctx, subject)
    if (inactive) throw new InactiveAccountError(`${subject.did}: the account is ${inactive}; its moods wait until it is active`)
    if (subject.did === null) {
      report.noAccount += diff.noAccount
      return diff.noAccount
    }
    const links = diff.links
    const pending = diff.unconfirmed.filter((doc) => doc.atproto?.state === 'pending' && doc.deleted !== true)
    if (dryRun) {
      report.linked += links.length
      report.queued += diff.unmigrated.length
      report.resumed += pending.length
      return records.length
    }
    if (links.length > 0) {
      const { attached } = await ctx.store.moods.apply(links)
      report.linked += attached
    }
    if (!writer || (diff.unmigrated.length === 0 && pending.length === 0)) return records.length
    const adopted = await writer.adopt(diff.unmigrated)
    report.queued += adopted.queued
    report.invalid += adopted.invalid
    report.resumed += pending.length
    const flushed = await flushOutbox(writer, subject.user!)
    for (const key of Object.keys(flushed) as (keyof FlushResult)[]) report.flushed[key] += flushed[key]
    const confirmed = await confirmWritten(ctx, subject)
    report.confirmed += confirmed
    return records.length
  })
  return report
}
