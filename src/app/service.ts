import type { Source } from '../ingest/events.ts'
import { Indexer, type IndexerOptions } from '../ingest/indexer.ts'
import type { Store } from '../store/store.ts'
import type { AnyCollection } from '../sync/collection.ts'
import { BackfillWorker } from '../reconcile/worker.ts'
import { OpsServer, type HealthReport } from '../server/ops-server.ts'
import { RetryWorker } from '../writer/worker.ts'
import type { App } from './app.ts'
import { createServiceMetrics, type ServiceMetrics } from './metrics.ts'

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
  #running?: Promise<void>

  constructor(opts: IngestServiceOptions) {
    const { app } = opts
    const log = app.log
    this.#app = app
    this.source = opts.source
    this.metrics = createServiceMetrics()
    this.indexer = new Indexer({ store: app.store, source: this.source, collections: opts.collections, log, metrics: this.metrics.ingest, onApplied: opts.onApplied })
    if (app.config.outbox) {
      const gauge = this.metrics.outbox
      this.#workers.push(new RetryWorker(app.writer, { log, onStats: (stats) => Object.entries(stats).forEach(([state, n]) => gauge.set(n, { state })) }))
    }
    if (app.config.autoBackfill) this.#workers.push(new BackfillWorker({ queue: app.store.backfill, sync: app.sync, log, metrics: this.metrics.backfill }))
    this.ops = new OpsServer({ host: app.config.http.host, port: app.config.http.port, registry: this.metrics.registry, health: () => this.health(), log })
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

  health(): HealthReport {
    const now = Date.now()
    const { stats } = this.source
    const state = this.indexer.state
    const limits = this.#app.config.health
    const problems: string[] = []
    const disconnectedFor = stats.connected || stats.disconnectedSince === undefined ? 0 : (now - stats.disconnectedSince) / 1000
    if (!stats.connected && (stats.disconnectedSince === undefined ? false : disconnectedFor > limits.maxDisconnectedSeconds)) {
      problems.push(`disconnected for ${Math.round(disconnectedFor)} s`)
    }
    if (state.lagSeconds > limits.maxLagSeconds) problems.push(`lag ${Math.round(state.lagSeconds)} s`)
    const storeFailingFor = state.storeFailingSince === undefined ? 0 : (now - state.storeFailingSince) / 1000
    if (storeFailingFor > limits.maxDisconnectedSeconds) problems.push(`MongoDB failing for ${Math.round(storeFailingFor)} s`)
    return {
      healthy: problems.length === 0,
      problems,
      source: this.source.id,
      connected: stats.connected,
      disconnectedSince: stats.disconnectedSince === undefined ? null : new Date(stats.disconnectedSince).toISOString(),
      lastDropReason: stats.lastDropReason ?? null,
      reconnects: stats.reconnects,
      lagSeconds: state.lagSeconds,
      appliedCursor: state.appliedCursor ?? null,
      savedCursor: state.savedCursor ?? null,
      lastAppliedAt: state.lastAppliedAt === undefined ? null : new Date(state.lastAppliedAt).toISOString(),
      gapsDetected: state.gaps,
      storeFailing: state.storeFailingSince !== undefined,
    }
  }

  async destroy(): Promise<void> {
    this.#abort.abort()
    await this.#running?.catch(() => {})
    await this.ops.destroy()
    await this.#app.destroy()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
