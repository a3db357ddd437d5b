import { MongoClient } from 'mongodb'
import type { Config } from '../config.ts'
import { StoreError } from '../errors.ts'
import { redactUrl, silentLogger, type Logger } from '../logger.ts'
import { Database } from './database.ts'
import { ensureIndexes } from './indexes.ts'
import { migrateStorage, type FillDidsResult } from './migrations.ts'

export interface StoreOptions {
  mongodb: Config['mongodb']
  logger?: Logger
  /** Milliseconds the driver waits for a server before an operation fails. */
  serverSelectionTimeoutMs?: number
  /** The MongoDB collections of the record types indexed (each gets its (DID, rkey) key); moods by default. */
  recordCollections?: readonly string[]
}

/** The MongoDB connection and moodsync's views of it (`Database`). One per process. */
export class Store extends Database implements AsyncDisposable {
  readonly client: MongoClient
  readonly #log: Logger
  readonly #uri: string
  readonly #recordCollections?: readonly string[]
  #probe?: MongoClient

  constructor(opts: StoreOptions) {
    // The driver lets constructor options override the connection string's: moodsync's default
    // applies only where MONGODB_URI does not set its own (`?serverSelectionTimeoutMS=`).
    const inUri = /[?&]serverSelectionTimeoutMS=/i.test(opts.mongodb.uri)
    const timeout = opts.serverSelectionTimeoutMs ?? (inUri ? undefined : 10_000)
    const client = new MongoClient(opts.mongodb.uri, { ...(timeout === undefined ? {} : { serverSelectionTimeoutMS: timeout }), appName: 'moodsync' })
    super(client.db(opts.mongodb.db))
    this.client = client
    this.#log = (opts.logger ?? silentLogger).child({ component: 'store' })
    this.#uri = opts.mongodb.uri
    this.#recordCollections = opts.recordCollections
  }

  /** Connects, creates indexes and runs storage migrations (all idempotent). */
  async start(): Promise<{ fillDids: FillDidsResult }> {
    let migrated: { fillDids: FillDidsResult }
    try {
      await this.client.connect()
      await ensureIndexes(this.db, this.#recordCollections)
      migrated = await migrateStorage(this.db, this.#log)
    } catch (err) {
      await this.client.close().catch(() => {})
      throw new StoreError(`cannot prepare MongoDB at ${redactUrl(this.#uri)}: ${(err as Error).message}`, { cause: err })
    }
    this.#log.debug({ db: this.db.databaseName }, 'store ready')
    return migrated
  }

  /**
   * A health ping on a client of its own (one connection): probes never queue behind the
   * work's operations, nor share the work's pool and monitor while MongoDB comes and goes (a
   * shared client, pinged through an outage under load, was seen never to select the server
   * again).
   */
  override async ping(): Promise<void> {
    this.#probe ??= new MongoClient(this.#uri, { maxPoolSize: 1, serverSelectionTimeoutMS: 5_000, appName: 'moodsync-probe' })
    await this.#probe.db(this.db.databaseName).command({ ping: 1 })
  }

  /**
   * Closes the client and opens it again: a new topology, monitor and pool. The driver's
   * monitor was seen, after an outage under load, never to check the server again (server
   * selection failing for minutes on a stale error while MongoDB answered); this is the way
   * out. Every view of the database keeps working: they reach the server through the client.
   */
  async reconnect(): Promise<void> {
    this.#log.warn('MongoDB has failed server selection for long: reopening the client')
    await this.client.close().catch(() => {})
    await this.client.connect()
  }

  async destroy(): Promise<void> {
    await Promise.all([this.client.close(), this.#probe?.close().catch(() => {})])
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
