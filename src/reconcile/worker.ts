import { silentLogger, type Logger } from '../logger.ts'
import type { Counter, Gauge } from '../metrics.ts'
import { Backoff, sleep } from '../retry.ts'
import type { BackfillQueue } from '../store/backfill-queue.ts'
import { backfill, type BackfillFailure } from './backfill.ts'
import type { RepoSync } from './repo-sync.ts'

/** A repo that failed to read waits this long, doubling, before the worker tries it again. */
const RETRY = new Backoff({ baseMs: 60_000, maxMs: 6 * 3_600_000 })

export interface BackfillWorkerMetrics {
  queue: Gauge
  repos: Counter
}

/**
 * Reads whole, in the background of `moodsync ingest`, the repos the indexer queued (a gap in
 * the stream, a `#sync`): the loop from "events were missed" to "MongoDB caught up" closes
 * without an operator. A repo that fails stays queued and is retried later with backoff.
 */
export class BackfillWorker {
  readonly #queue: Pick<BackfillQueue, 'count' | 'due' | 'retryLater'>
  readonly #sync: RepoSync
  readonly #log: Logger
  readonly #metrics?: BackfillWorkerMetrics
  readonly #idleMs: number
  readonly #concurrency: number
  readonly #batch: number

  constructor(opts: { queue: Pick<BackfillQueue, 'count' | 'due' | 'retryLater'>; sync: RepoSync; log?: Logger; metrics?: BackfillWorkerMetrics; idleMs?: number; concurrency?: number; batch?: number }) {
    this.#queue = opts.queue
    this.#sync = opts.sync
    this.#log = (opts.log ?? silentLogger).child({ component: 'backfill-worker' })
    this.#metrics = opts.metrics
    this.#idleMs = opts.idleMs ?? 10_000
    this.#concurrency = opts.concurrency ?? 2
    this.#batch = opts.batch ?? 100
  }

  async run(signal: AbortSignal): Promise<void> {
    const failures = new Backoff({ baseMs: 1_000, maxMs: 60_000 })
    while (!signal.aborted) {
      try {
        const worked = await this.step(signal)
        failures.reset()
        if (!worked) await sleep(this.#idleMs, signal)
      } catch (err) {
        this.#log.error({ err }, 'background backfill failed; retrying')
        await sleep(failures.next(), signal)
      }
    }
  }

  /** One round: reads the due repos; every failed one waits with backoff. False when none was due. */
  async step(signal?: AbortSignal): Promise<boolean> {
    this.#metrics?.queue.set(await this.#queue.count())
    const due = await this.#queue.due(this.#batch)
    if (due.length === 0) return false
    const failed: BackfillFailure[] = []
    const report = await backfill(this.#sync, due.map((d) => d._id), { concurrency: this.#concurrency, signal, log: this.#log, onFailure: (f) => failed.push(f) })
    for (const [outcome, n] of Object.entries(report.repos)) if (n > 0) this.#metrics?.repos.inc({ outcome }, n)
    const attemptsOf = new Map(due.map((d) => [d._id, d.attempts ?? 0]))
    for (const failure of failed) {
      const attempts = (attemptsOf.get(failure.did) ?? 0) + 1
      await this.#queue.retryLater(failure.did, attempts, new Date(Date.now() + RETRY.delayFor(attempts - 1)), `${failure.kind}: ${failure.message}`)
    }
    this.#log.info({ ...report.repos, records: report.records, ...report.applied }, 'queued repos backfilled')
    return true
  }
}
