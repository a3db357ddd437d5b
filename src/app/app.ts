import type { IdResolver } from '@atproto/identity'
import { createIdResolver } from '../atproto/identity.ts'
import { RepoReader } from '../atproto/repo-reader.ts'
import type { Config } from '../config.ts'
import { FirehoseSource } from '../ingest/firehose.ts'
import type { Source } from '../ingest/events.ts'
import { JetstreamSource } from '../ingest/jetstream.ts'
import { TapSource } from '../ingest/tap.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { ReconcileContext } from '../reconcile/inspect.ts'
import { RepoSync } from '../reconcile/repo-sync.ts'
import { Store } from '../store/store.ts'
import type { AnyCollection } from '../sync/collection.ts'
import { moodCollection } from '../sync/mood.ts'
import type { Database } from '../store/database.ts'
import { Writer, type WriterOptions } from '../writer/writer.ts'
import { IngestService, type IngestServiceOptions } from './service.ts'

/** The record types this build indexes: a new one is one definition added here. */
export const COLLECTIONS_INDEXED: readonly AnyCollection[] = [moodCollection]

export interface AppOptions {
  log?: Logger
  /** For the PDS and repo reads (tests inject faults). */
  fetch?: typeof globalThis.fetch
  /** Aborts long work (repo reads' retries) early: the CLI's SIGINT/SIGTERM. */
  signal?: AbortSignal
}

/** The writer on a database: the App's, or the `Db` a serverless function already holds. */
export function createWriter(store: Database, opts: WriterOptions): Writer {
  return new Writer(store, opts)
}

/**
 * The composition root: one Config becomes the store, the repo reader, the writer and the
 * backfill path; `ingestService()` adds the deployed indexer. The CLI, the service and the
 * library all build through here. `destroy()` (or `App.using`) aborts what runs and closes
 * MongoDB, last.
 */
export class App implements AsyncDisposable {
  readonly config: Config
  readonly log: Logger
  readonly store: Store
  readonly reader: RepoReader
  readonly sync: RepoSync
  readonly #fetch?: typeof globalThis.fetch
  #writer?: Writer
  readonly #abort = new AbortController()
  /** One DID cache for the repo reader and the firehose: a key resolved once serves both. */
  readonly #idResolver: IdResolver

  constructor(config: Config, opts: AppOptions = {}) {
    this.config = config
    this.log = opts.log ?? silentLogger
    this.#idResolver = createIdResolver(config.plcUrl)
    this.store = new Store({ mongodb: config.mongodb, logger: this.log, recordCollections: COLLECTIONS_INDEXED.map((def) => def.mongoCollection) })
    this.reader = new RepoReader({ idResolver: this.#idResolver, collection: moodCollection.nsid, log: this.log, signal: opts.signal ? AbortSignal.any([opts.signal, this.#abort.signal]) : this.#abort.signal, fetch: opts.fetch })
    this.sync = new RepoSync({ store: this.store, reader: this.reader, log: this.log })
    this.#fetch = opts.fetch
  }

  /** Built on first use: its key derivation (scrypt, with MOODSYNC_SECRET) is start-up work only writers need. */
  get writer(): Writer {
    this.#writer ??= createWriter(this.store, { pdsUrl: this.config.pdsUrl, secret: this.config.secret, previousSecret: this.config.previousSecret, log: this.log, fetch: this.#fetch })
    return this.#writer
  }

  /** Connects to MongoDB, creates indexes and runs the storage migrations. */
  start(): ReturnType<Store['start']> {
    return this.store.start()
  }

  /** What the reconcile commands (status, repair, dedupe, migrate) run on. */
  get reconcile(): ReconcileContext {
    return { store: this.store, reader: this.reader, sync: this.sync, writer: this.writer, log: this.log }
  }

  /** The stream the config names (Jetstream or a verified firehose), over the indexed collections. */
  createSource(): Source {
    const collections = COLLECTIONS_INDEXED.map((def) => def.nsid)
    const idleTimeoutMs = this.config.idleTimeoutSeconds * 1000
    if (this.config.source === 'jetstream') return new JetstreamSource({ url: this.config.jetstreamUrl, collections, log: this.log, idleTimeoutMs })
    if (this.config.source === 'tap') {
      const { url, adminPassword, addUsers } = this.config.tap
      return new TapSource({ url, adminPassword, collections, log: this.log, idleTimeoutMs, repos: addUsers ? () => this.store.users.allDids() : undefined })
    }
    return new FirehoseSource({ url: this.config.firehoseUrl, collections, idResolver: this.#idResolver, log: this.log, idleTimeoutMs })
  }

  /** The deployed indexer on this app: it owns the app from then on and destroys it last. */
  ingestService(opts: Pick<IngestServiceOptions, 'onApplied'> & { source?: Source } = {}): IngestService {
    return new IngestService({ app: this, source: opts.source ?? this.createSource(), collections: COLLECTIONS_INDEXED, onApplied: opts.onApplied })
  }

  /**
   * Runs `work` on a new app and destroys it after, whatever happens (`await using` is not
   * syntax Node 22 runs yet).
   */
  static async using<T>(config: Config, opts: AppOptions, work: (app: App) => Promise<T>): Promise<T> {
    const app = new App(config, opts)
    try {
      return await work(app)
    } finally {
      await app.destroy()
    }
  }

  async destroy(): Promise<void> {
    this.#abort.abort()
    await this.store.destroy()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
