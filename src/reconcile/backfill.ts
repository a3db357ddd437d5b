import { silentLogger, type Logger } from '../logger.ts'
import type { ApplyResult } from '../store/moods.ts'
import { forEachConcurrent } from './pool.ts'
import { Progress } from './progress.ts'
import { RepoUnavailableError } from './repo-reader.ts'
import { addApplyResult, emptyApplyResult, type RepoSync } from './repo-sync.ts'

export interface BackfillOptions {
  /** Repos read at once. */
  concurrency?: number
  /** Read every repo even when its rev is the one already read. */
  force?: boolean
  signal?: AbortSignal
  /** Where progress lines go (stderr for the CLI); none when absent. */
  progress?: NodeJS.WritableStream
  /** Known up front for DID lists; absent for a discovery still listing. */
  total?: number
  log?: Logger
}

export interface BackfillReport {
  repos: { synced: number; unchanged: number; hidden: number; failed: number }
  /** Moods in the repos read. */
  records: number
  applied: ApplyResult
  quarantined: number
  bytes: number
  /** Failures by kind (`unreachable`, `verification`, `not-found`, `store`, ...). */
  failures: Record<string, number>
  /** The first failures in full, for the operator to look at. */
  failed: { did: string; kind: string; message: string }[]
  elapsedMs: number
  interrupted: boolean
}

const KEEP_FAILED = 20

/**
 * Reads repos whole and applies them, a bounded number at a time. One repo's failure is
 * counted by kind and the run goes on. Resumable by construction: every repo done records its
 * rev, so running again after an interruption skips what is done with one small request each.
 */
export async function backfill(sync: RepoSync, dids: AsyncIterable<string> | Iterable<string>, opts: BackfillOptions = {}): Promise<BackfillReport> {
  const log = (opts.log ?? silentLogger).child({ component: 'backfill' })
  const started = Date.now()
  const report: BackfillReport = { repos: { synced: 0, unchanged: 0, hidden: 0, failed: 0 }, records: 0, applied: emptyApplyResult(), quarantined: 0, bytes: 0, failures: {}, failed: [], elapsedMs: 0, interrupted: false }
  const progress = opts.progress ? new Progress(opts.progress, 'backfill') : undefined
  const counts = () => ({ done: report.repos.synced + report.repos.unchanged + report.repos.hidden + report.repos.failed, total: opts.total, failed: report.repos.failed, records: report.records })

  await forEachConcurrent(dids, opts.concurrency ?? 4, opts.signal, async (did) => {
    try {
      const res = await sync.sync(did, { force: opts.force })
      report.repos[res.outcome]++
      report.records += res.records
      report.quarantined += res.quarantined
      report.bytes += res.bytes
      addApplyResult(report.applied, res.applied)
    } catch (err) {
      const kind = err instanceof RepoUnavailableError ? err.kind : 'store'
      report.repos.failed++
      report.failures[kind] = (report.failures[kind] ?? 0) + 1
      if (report.failed.length < KEEP_FAILED) report.failed.push({ did, kind, message: (err as Error).message })
      log.warn({ did, kind, err: (err as Error).message }, 'repo backfill failed')
    }
    progress?.update(counts())
  })
  report.interrupted = opts.signal?.aborted ?? false
  report.elapsedMs = Date.now() - started
  progress?.finish(counts())
  return report
}
