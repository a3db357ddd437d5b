import type { Source } from '../ingest/events.ts'
import { Indexer, lagSeconds, type IndexerOptions } from '../ingest/indexer.ts'
import type { Store } from '../store/store.ts'
import type { AnyCollection } from '../sync/collection.ts'
import { BackfillWorker } from '../reconcile/worker.ts'
import { OpsServer, type HealthReport } from '../server/ops-server.ts'
import { RetryWorker } from '../writer/worker.ts'
import type { App } from './app.ts'
import { createServiceMetrics, type ServiceMetrics } from './metrics.ts'
import { StoreProbe } from './store-probe.ts'
import { Lease, LeasedWorker, holderId } from './lease.ts'

/** How long shutdown waits for the work in hand before closing MongoDB under it. */
const SHUTDOWN_GRACE_MS = 5_000

/** The lease for the jobs one process runs for all (the outbox retry worker, the backfill worker). */
export const JOBS_LEASE = 'jobs'

export interface IngestServiceOptions {
  app: App
  source: Source
  collections: readonly AnyCollection[]
  /** Passed to the indexer: called once each batch is durable. */
  onApplied?: IndexerOptions['onApplied']
}

/**
 * The deployed indexer: a source, the indexer, the outbox and backfill workers, and the
 * health/metrics listener, on an App's store. `start()` brings MongoDB up first; `destroy()`
 * stops reading, flushes the cursor and tears down in reverse, the app (MongoDB) last.
 */
export class IngestService implements AsyncDisposable {
  readonly source: Source
  readonly indexer: Indexer
  readonly ops: OpsServer
  readonly metrics: ServiceMetrics
  readonly #app: App
  readonly #abort = new AbortController()
  readonly #workers: { run(signal: AbortSignal): Promise<void> }[] = []
  readonly #probe: StoreProbe
  /** How many lease-guarded jobs this process has (none: no lease is taken). */
  readonly #jobs: number
  /** Held by the one process that runs the retry and backfill workers. */
  readonly lease: Lease
  #running?: Promise<void>

  constructor(opts: IngestServiceOptions) {
    const { app } = opts
    const log = app.log
    this.#app = app
    this.source = opts.source
    this.metrics = createServiceMetrics()
    this.indexer = new Indexer({ store: app.store, source: this.source, collections: opts.collections, log, metrics: this.metrics.ingest, onApplied: opts.onApplied })
    // Every replica indexes (idempotent); the jobs that write or read whole repos run in one.
    this.lease = new Lease({ store: app.store.leases, name: JOBS_LEASE, holder: holderId(), ttlMs: app.config.leaseSeconds * 1000, log })
    if (app.config.outbox) {
      const gauge = this.metrics.outbox
      this.#workers.push(new LeasedWorker(this.lease, new RetryWorker(app.writer, { log, onStats: (stats) => Object.entries(stats).forEach(([state, n]) => gauge.set({ state }, n)) })))
    }
    if (app.config.autoBackfill) this.#workers.push(new LeasedWorker(this.lease, new BackfillWorker({ queue: app.store.backfill, sync: app.sync, log, metrics: this.metrics.backfill })))
    this.#jobs = this.#workers.length
    if (this.#jobs > 0) this.#workers.push(this.lease)
    // Often enough to see a hung MongoDB well within the limit it is judged by.
    const probeMs = Math.min(5_000, Math.max(200, (app.config.health.maxDisconnectedSeconds * 1000) / 4))
    this.#probe = new StoreProbe({ ping: () => app.store.ping(), intervalMs: probeMs, timeoutMs: probeMs, log })
    this.#workers.push(this.#probe)
    this.ops = new OpsServer({ host: app.config.http.host, port: app.config.http.port, registry: this.metrics.registry, health: () => this.health(), readiness: () => this.readiness(), log })
  }

  get store(): Store {
    return this.#app.store
  }

  async start(): Promise<void> {
    await this.#app.start()
    try {
      await this.ops.start()
    } catch (err) {
      await this.#app.destroy()
      throw err
    }
    const indexing = this.indexer.run(this.#abort.signal).catch((err) => {
      // The indexer retries MongoDB and the network forever; reaching here is a bug, so say so.
      this.#app.log.fatal({ err }, 'indexer stopped unexpectedly')
      throw err
    })
    this.#running = Promise.all([indexing, ...this.#workers.map((w) => w.run(this.#abort.signal))]).then(() => {})
  }

  /** Resolves when the indexer stops (after destroy(), or on an unexpected failure). */
  get done(): Promise<void> {
    return this.#running ?? Promise.resolve()
  }

  /**
   * Liveness: unhealthy while the source has been disconnected, MongoDB failing or hung, or
   * the lag high, past the configured limits. Everything is computed now, not when the last
   * event came: a dead line shows while it is dead.
   */
  health(): HealthReport {
    const now = Date.now()
    const limits = this.#app.config.health
    const report = this.#details(now)
    const problems: string[] = []
    if (report.disconnectedForSeconds > limits.maxDisconnectedSeconds) problems.push(`source disconnected for ${Math.round(report.disconnectedForSeconds)} s`)
    if (report.lagSeconds > limits.maxLagSeconds) problems.push(`lag ${Math.round(report.lagSeconds)} s`)
    if (report.storeFailingForSeconds > limits.maxDisconnectedSeconds) problems.push(`MongoDB failing or not answering for ${Math.round(report.storeFailingForSeconds)} s`)
    return { healthy: problems.length === 0, problems, ...report }
  }

  /** Readiness: MongoDB answers, the source is connected, and the stream is caught up (lag within the limit). */
  readiness(): HealthReport {
    const now = Date.now()
    const report = this.#details(now)
    const problems: string[] = []
    if (this.indexer.state.startedAt === undefined) problems.push('starting')
    if (this.#probe.state.lastOkAt === undefined || report.storeFailing) problems.push('MongoDB not answering')
    if (!report.connected) problems.push('source not connected')
    if (report.lagSeconds > this.#app.config.health.maxLagSeconds) problems.push(`catching up: lag ${Math.round(report.lagSeconds)} s`)
    return { healthy: problems.length === 0, ready: problems.length === 0, problems, ...report }
  }

  #details(now: number) {
    const { stats } = this.source
    const state = this.indexer.state
    const probe = this.#probe.state
    const since = [state.storeFailingSince, probe.failingSince, state.storeBusySince].filter((t): t is number => t !== undefined)
    const storeFailingFor = since.length === 0 ? 0 : (now - Math.min(...since)) / 1000
    const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString())
    return {
      source: this.source.id,
      instance: this.source.instance,
      connected: stats.connected,
      disconnectedSince: iso(stats.disconnectedSince),
      disconnectedForSeconds: stats.connected || stats.disconnectedSince === undefined ? 0 : (now - stats.disconnectedSince) / 1000,
      lastDropReason: stats.lastDropReason ?? null,
      reconnects: stats.reconnects,
      lagSeconds: lagSeconds(state, now),
      caughtUpTo: iso(state.caughtUpTo),
      appliedCursor: state.appliedCursor ?? null,
      savedCursor: state.savedCursor ?? null,
      lastAppliedAt: iso(state.lastAppliedAt),
      gapsDetected: state.gaps,
      // Failing since the first of: a refused write, an unanswered ping, a write still waiting.
      storeFailing: state.storeFailingSince !== undefined || probe.failingSince !== undefined,
      storeFailingForSeconds: storeFailingFor,
      storeError: probe.lastError ?? null,
      // Which replica runs the retry and backfill workers: this one, or another.
      jobs: this.#jobs === 0 ? 'off' : this.lease.held ? `running here (${this.lease.holder})` : 'another process holds the lease',
    }
  }

  /**
   * Stops reading, lets the batch in hand and the cursor save finish, and closes. A MongoDB
   * that answers nothing cannot hold the process: after a grace period the connection is
   * closed under the waiting operations (they fail; what they covered is replayed next time).
   */
  async destroy(): Promise<void> {
    this.#abort.abort()
    const running = this.#running?.catch(() => {}).then(() => this.lease.release())
    let timer: NodeJS.Timeout | undefined
    const stopped = await Promise.race([running?.then(() => true) ?? true, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), SHUTDOWN_GRACE_MS)))])
    clearTimeout(timer)
    await this.ops.destroy()
    if (!stopped) this.#app.log.warn({ graceMs: SHUTDOWN_GRACE_MS }, 'MongoDB has not answered since shutdown began: closing the connection under the waiting operations')
    await this.#app.destroy()
    await running
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
