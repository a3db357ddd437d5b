import type { RepoSnapshot } from '../atproto/repo-reader.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { RepoStateDoc } from '../store/collections.ts'
import { addApplyResult, emptyApplyResult, type ApplyResult } from '../store/ops.ts'
import { failureKind } from './failures.ts'
import { forEachConcurrent } from './pool.ts'
import { Progress } from './progress.ts'
import type { RepoSync } from './repo-sync.ts'
import { RevChecker } from './revs.ts'

/** One repo that could not be backfilled, and why. */
export interface BackfillFailure {
  did: string
  kind: string
  message: string
}

export interface BackfillOptions {
  /** Repos read at once. */
  concurrency?: number
  /** Read every repo even when its rev is the one already read. */
  force?: boolean
  /** Read and decide as usual, write nothing: the report says what a real run would change. */
  dryRun?: boolean
  signal?: AbortSignal
  /** Where progress lines go (stderr for the CLI); none when absent. */
  progress?: NodeJS.WritableStream
  /** Repos written to MongoDB together (default 50, fewer when they hold 5,000 moods). */
  batchRepos?: number
  /** Known up front for DID lists; absent for a discovery still listing. */
  total?: number
  /** Called for every failed repo (the report keeps only the first few): the caller's retry hook. */
  onFailure?: (failure: BackfillFailure) => void
  log?: Logger
}

export interface BackfillReport {
  /** Nothing was written: `applied`, `restored` and `hiddenMoods` are what a real run would do. */
  dryRun: boolean
  /** Repos asked for; absent while a discovery listing was still running when the run ended. */
  total?: number
  repos: { synced: number; unchanged: number; hidden: number; failed: number }
  /** Moods in the repos read. */
  records: number
  applied: ApplyResult
  /** Moods a status change had hidden, brought back because the host serves the repo again. */
  restored: number
  /** Moods hidden because the host says their account is not active. */
  hiddenMoods: number
  quarantined: number
  bytes: number
  /** Failures by kind (`unreachable`, `verification`, `not-found`, `store`, ...). */
  failures: Record<string, number>
  /** The first failures in full, for the operator to look at. */
  failed: BackfillFailure[]
  elapsedMs: number
  interrupted: boolean
}

const KEEP_FAILED = 20
const BATCH_REPOS = 50
const BATCH_RECORDS = 5000
const CHUNK = 500

/** Groups a (possibly lazy) sequence, without reading ahead more than one group. */
async function* chunks<T>(items: AsyncIterable<T> | Iterable<T>, size: number): AsyncGenerator<T[]> {
  let chunk: T[] = []
  for await (const item of items) {
    chunk.push(item)
    if (chunk.length >= size) {
      yield chunk
      chunk = []
    }
  }
  if (chunk.length > 0) yield chunk
}

/**
 * Reads repos whole, a bounded number at a time, and applies them in batches. One repo's failure is
 * counted by kind and the run goes on. Resumable by construction: every repo done records its
 * rev, so running again after an interruption skips what is done with one small request each.
 */
export async function backfill(sync: RepoSync, dids: AsyncIterable<string> | Iterable<string>, opts: BackfillOptions = {}): Promise<BackfillReport> {
  const log = (opts.log ?? silentLogger).child({ component: 'backfill' })
  const started = Date.now()
  const dryRun = opts.dryRun ?? false
  const report: BackfillReport = { dryRun, ...(opts.total === undefined ? {} : { total: opts.total }), repos: { synced: 0, unchanged: 0, hidden: 0, failed: 0 }, records: 0, applied: emptyApplyResult(), restored: 0, hiddenMoods: 0, quarantined: 0, bytes: 0, failures: {}, failed: [], elapsedMs: 0, interrupted: false }
  const progress = opts.progress ? new Progress(opts.progress, dryRun ? 'backfill plan' : 'backfill') : undefined
  const done = () => report.repos.synced + report.repos.unchanged + report.repos.hidden + report.repos.failed
  const counts = () => ({ done: done(), total: opts.total, failed: report.repos.failed, records: report.records })

  const fail = (did: string, err: unknown) => {
    const kind = failureKind(err)
    report.repos.failed++
    report.failures[kind] = (report.failures[kind] ?? 0) + 1
    const failure = { did, kind, message: (err as Error).message }
    if (report.failed.length < KEEP_FAILED) report.failed.push(failure)
    opts.onFailure?.(failure)
    log.warn({ did, kind, err }, 'repo backfill failed')
  }

  // Repos read are written together: one round of MongoDB queries per batch, not per repo.
  // Flushes run one at a time; a reader that fills a batch waits for it (backpressure).
  const batch: RepoSnapshot[] = []
  let batchRecords = 0
  let flushing: Promise<void> = Promise.resolve()
  const flush = () => {
    flushing = flushing.then(async () => {
      const snapshots = batch.splice(0)
      batchRecords = 0
      if (snapshots.length === 0) return
      try {
        const applied = dryRun ? await sync.planMany(snapshots) : await sync.applyMany(snapshots)
        report.repos.synced += snapshots.length
        report.records += applied.records
        report.quarantined += applied.quarantined
        report.bytes += applied.bytes
        report.restored += applied.restored
        addApplyResult(report.applied, applied.applied)
      } catch (err) {
        for (const snapshot of snapshots) fail(snapshot.did, err)
      }
      progress?.update(counts())
    })
    return flushing
  }

  // DIDs go in chunks: what was read of each chunk's repos before, and whether their revs
  // moved, is asked for the chunk at once (one query; one listRepos per shared PDS).
  const revs = new RevChecker(sync.reader)
  for await (const chunk of chunks(dids, CHUNK)) {
    const states = opts.force ? new Map<string, RepoStateDoc>() : await sync.states(chunk)
    revs.prime(states.values())
    const unchanged: string[] = []
    await forEachConcurrent(chunk, opts.concurrency ?? 4, opts.signal, async (did) => {
      try {
        const prepared = await sync.prepare(did, { force: opts.force, state: states.get(did) ?? null, revs, dryRun })
        if (prepared.outcome === 'read') {
          batch.push(prepared.snapshot)
          batchRecords += prepared.snapshot.records.length
          if (batch.length >= (opts.batchRepos ?? BATCH_REPOS) || batchRecords >= BATCH_RECORDS) await flush()
        } else {
          if (prepared.outcome === 'unchanged') unchanged.push(did)
          if (prepared.outcome === 'hidden') report.hiddenMoods += prepared.moods
          report.repos[prepared.outcome]++
          report.records += prepared.records
        }
      } catch (err) {
        // A read cut short by the interruption is not that repo's failure: it is simply not
        // done, and the next run reads it.
        if (!opts.signal?.aborted) fail(did, err)
      }
      progress?.update(counts())
    })
    if (!dryRun) await sync.dequeue(unchanged)
    if (opts.signal?.aborted) break
  }
  // What was read before an interruption is written too: the work done is kept.
  await flush()
  // Interrupted means work was left: aborted after the last repo, the run is complete.
  report.interrupted = opts.signal?.aborted === true && (opts.total === undefined || done() < opts.total)
  report.elapsedMs = Date.now() - started
  progress?.finish(counts())
  return report
}
