import { IdResolver, MemoryCache } from '@atproto/identity'
import type { Config } from '../config.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { OpsServer, type HealthReport } from '../server/ops-server.ts'
import { Store } from '../store/store.ts'
import { BackfillWorker } from '../reconcile/worker.ts'
import { RepoReader } from '../reconcile/repo-reader.ts'
import { RepoSync } from '../reconcile/repo-sync.ts'
import { RetryWorker } from '../writer/worker.ts'
import { Writer } from '../writer/writer.ts'
import type { Source } from './events.ts'
import { FirehoseSource } from './firehose.ts'
import { Indexer } from './indexer.ts'
import { JetstreamSource } from './jetstream.ts'

export interface IngestServiceOptions {
  config: Config
  log?: Logger
  /** Overrides the source the config names (tests, benchmarks). */
  source?: Source
}

/**
 * The deployed indexer: MongoDB, a source, the indexer and the health/metrics listener.
 * `start()` brings them up in that order; `destroy()` stops reading, flushes the cursor and
 * tears down in reverse.
 */
export class IngestService {
  readonly store: Store
  readonly source: Source
  readonly indexer: Indexer
  readonly ops: OpsServer
  readonly #config: Config
  readonly #log: Logger
  readonly #abort = new AbortController()
  readonly #worker?: RetryWorker
  readonly #backfill?: BackfillWorker
  #running?: Promise<void>

  constructor(opts: IngestServiceOptions) {
    this.#config = opts.config
    this.#log = opts.log ?? silentLogger
    this.store = new Store({ mongodb: opts.config.mongodb, logger: this.#log })
    this.source = opts.source ?? createSource(opts.config, this.#log)
    this.indexer = new Indexer({ store: this.store, source: this.source, log: this.#log })
    if (opts.config.outbox) {
      const writer = new Writer(this.store.db, { pdsUrl: opts.config.pdsUrl, secret: opts.config.secret, log: this.#log })
      const gauge = this.indexer.metrics.outbox
      this.#worker = new RetryWorker(writer, {
        log: this.#log,
        onStats: (stats) => {
          for (const [state, n] of Object.entries(stats)) gauge.set(n, { state })
        },
      })
    }
    if (opts.config.autoBackfill) {
      const reader = new RepoReader({ idResolver: createIdResolver(opts.config.plcUrl), log: this.#log, signal: this.#abort.signal })
      const sync = new RepoSync({ store: this.store, reader, log: this.#log })
      this.#backfill = new BackfillWorker({ db: this.store.db, sync, log: this.#log, metrics: this.indexer.metrics })
    }
    this.ops = new OpsServer({ host: opts.config.http.host, port: opts.config.http.port, registry: this.indexer.metrics.registry, health: () => this.health(), log: this.#log })
  }

  async start(): Promise<void> {
    await this.store.start()
    try {
      await this.ops.start()
    } catch (err) {
      await this.store.destroy()
      throw err
    }
    const indexing = this.indexer.run(this.#abort.signal).catch((err) => {
      // The indexer retries MongoDB and the network forever; reaching here is a bug, so say so.
      this.#log.fatal({ err }, 'indexer stopped unexpectedly')
      throw err
    })
    this.#running = Promise.all([indexing, this.#worker?.run(this.#abort.signal), this.#backfill?.run(this.#abort.signal)]).then(() => {})
  }

  /** Resolves when the indexer stops (after destroy(), or on an unexpected failure). */
  get done(): Promise<void> {
    return this.#running ?? Promise.resolve()
  }

  health(): HealthReport {
    const now = Date.now()
    const { stats } = this.source
    const state = this.indexer.state
    const limits = this.#config.health
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
    await this.store.destroy()
  }
}

export function createSource(config: Config, log: Logger): Source {
  if (config.source === 'jetstream') return new JetstreamSource({ url: config.jetstreamUrl, log })
  return new FirehoseSource({ url: config.firehoseUrl, idResolver: createIdResolver(config.plcUrl), log })
}

/**
 * DID documents cached (signing keys rarely change; a failed verification refreshes once).
 * The default fetch refuses loopback and private addresses (SSRF protection); a PLC on
 * loopback is a development network, so it gets the plain fetch.
 */
export function createIdResolver(plcUrl: string): IdResolver {
  const host = new URL(plcUrl).hostname
  const loopback = host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.')
  return new IdResolver({ plcUrl, didCache: new MemoryCache(), ...(loopback ? { fetch: globalThis.fetch } : {}) })
}
