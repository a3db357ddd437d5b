import type { Db } from 'mongodb'
import type { IngestMetrics } from '../ingest/metrics.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { Backoff, sleep } from '../retry.ts'
import { COLLECTIONS, type BackfillDoc } from '../store/collections.ts'
import { backfill } from './backfill.ts'
import type { RepoSync } from './repo-sync.ts'

/** A repo that failed to read waits this long, doubling, before the worker tries it again. */
const RETRY = new Backoff({ baseMs: 60_000, maxMs: 6 * 3_600_000 })

/**
 * Reads whole, in the background of `moodsync ingest`, the repos the indexer queued (a gap in
 * the stream, a `#sync`): the loop from "events were missed" to "MongoDB caught up" closes
 * without an operator. A repo that fails stays queued and is retried later with backoff.
 */
export class BackfillWorker {
  readonly #db: Db
  readonly #sync: RepoSync
  readonly #log: Logger
  readonly #metrics?: IngestMetrics
  readonly #idleMs: number
  readonly #concurrency: number

  constructor(opts: { db: Db; sync: RepoSync; log?: Logger; metrics?: IngestMetrics; idleMs?: number; concurrency?: number }) {
    this.#db = opts.db
    this.#sync = opts.sync
    this.#log = (opts.log ?? silentLogger).child({ component: 'backfill-worker' })
    this.#metrics = opts.metrics
    this.#idleMs = opts.idleMs ?? 10_000
    this.#concurrency = opts.concurrency ?? 2
  }

  get #queue() {
    return this.#db.collection<BackfillDoc>(COLLECTIONS.backfill)
  }

  async run(signal: AbortSignal): Promise<void> {
    const failures = new Backoff({ baseMs: 1_000, maxMs: 60_000 })
    while (!signal.aborted) {
      try {
        this.#metrics?.backfillQueue.set(await this.#queue.countDocuments())
        const due = await this.#queue
          .find({ $or: [{ nextAttemptAt: { $exists: false } }, { nextAttemptAt: { $lte: new Date() } }] })
          .sort({ since: 1 })
          .limit(100)
          .toArray()
        failures.reset()
        if (due.length === 0) {
          await sleep(this.#idleMs, signal)
          continue
        }
        const report = await backfill(this.#sync, due.map((d) => d._id), { concurrency: this.#concurrency, signal, log: this.#log })
        for (const [outcome, n] of Object.entries(report.repos)) if (n > 0) this.#metrics?.backfilled.inc({ outcome }, n)
        for (const failed of report.failed) {
          const attempts = (due.find((d) => d._id === failed.did)?.attempts ?? 0) + 1
          await this.#queue.updateOne({ _id: failed.did }, { $set: { attempts, nextAttemptAt: new Date(Date.now() + RETRY.delayFor(attempts - 1)), error: `${failed.kind}: ${failed.message}` } })
        }
        this.#log.info({ ...report.repos, records: report.records, ...report.applied }, 'queued repos backfilled')
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'background backfill failed; retrying')
        await sleep(failures.next(), signal)
      }
    }
  }
}
