import { MongoClient, type Db } from 'mongodb'
import type { Config } from '../config.ts'
import { StoreError } from '../errors.ts'
import { redactUrl, silentLogger, type Logger } from '../logger.ts'
import { CursorStore } from './cursors.ts'
import { ensureIndexes } from './indexes.ts'
import { migrateStorage, type FillDidsResult } from './migrations.ts'
import { MoodStore } from './moods.ts'
import { GapStore, QuarantineStore } from './quarantine.ts'

export interface StoreOptions {
  mongodb: Config['mongodb']
  logger?: Logger
  /** Seconds the driver waits for a server before an operation fails. */
  serverSelectionTimeoutMs?: number
}

/** The MongoDB connection and moodsync's views of it. One per process. */
export class Store {
  readonly client: MongoClient
  readonly db: Db
  readonly moods: MoodStore
  readonly cursors: CursorStore
  readonly quarantine: QuarantineStore
  readonly gaps: GapStore
  readonly #log: Logger
  readonly #uri: string

  constructor(opts: StoreOptions) {
    this.#log = opts.logger ?? silentLogger
    this.#uri = opts.mongodb.uri
    this.client = new MongoClient(opts.mongodb.uri, {
      serverSelectionTimeoutMS: opts.serverSelectionTimeoutMs ?? 10_000,
      appName: 'moodsync',
    })
    this.db = this.client.db(opts.mongodb.db)
    this.moods = new MoodStore(this.db)
    this.cursors = new CursorStore(this.db)
    this.quarantine = new QuarantineStore(this.db)
    this.gaps = new GapStore(this.db)
  }

  /** Connects, creates indexes and runs storage migrations (all idempotent). */
  async start(): Promise<{ fillDids: FillDidsResult }> {
    let migrated: { fillDids: FillDidsResult }
    try {
      await this.client.connect()
      await ensureIndexes(this.db)
      migrated = await migrateStorage(this.db, this.#log)
    } catch (err) {
      await this.client.close().catch(() => {})
      throw new StoreError(`cannot prepare MongoDB at ${redactUrl(this.#uri)}: ${(err as Error).message}`, { cause: err })
    }
    this.#log.debug({ db: this.db.databaseName }, 'store ready')
    return migrated
  }

  async destroy(): Promise<void> {
    await this.client.close()
  }
}
