import type { Db } from 'mongodb'
import { BackfillQueue } from './backfill-queue.ts'
import { COLLECTIONS } from './collections.ts'
import { CredentialRecords } from './credentials.ts'
import { CursorStore } from './cursors.ts'
import { ForgottenStore } from './forgotten.ts'
import { GapStore } from './gaps.ts'
import { IdentityStore } from './identities.ts'
import { LeaseStore } from './leases.ts'
import { OutboxStore } from './outbox.ts'
import { QuarantineStore } from './quarantine.ts'
import { MoodStore, RecordStore } from './records.ts'
import { RepoStateStore } from './repos.ts'
import { SessionStore } from './sessions.ts'
import { UserStore } from './users.ts'

/**
 * moodsync's view of one MongoDB database: one object per collection or concern, and the only
 * place in moodsync that touches the driver's collections. It owns no connection (`Store`
 * does), so the platform's functions can build one on the `Db` they already hold.
 */
export class Database {
  readonly db: Db
  readonly moods: MoodStore
  readonly users: UserStore
  readonly cursors: CursorStore
  readonly quarantine: QuarantineStore
  readonly backfill: BackfillQueue
  readonly gaps: GapStore
  readonly repos: RepoStateStore
  readonly forgotten: ForgottenStore
  readonly outbox: OutboxStore
  readonly credentials: CredentialRecords
  readonly sessions: SessionStore
  readonly identities: IdentityStore
  readonly leases: LeaseStore
  readonly #records = new Map<string, RecordStore<object>>()

  constructor(db: Db) {
    this.db = db
    this.repos = new RepoStateStore(db)
    this.moods = new MoodStore(db, { repos: this.repos })
    this.#records.set(COLLECTIONS.moods, this.moods as unknown as RecordStore<object>)
    this.users = new UserStore(db)
    this.cursors = new CursorStore(db)
    this.quarantine = new QuarantineStore(db)
    this.backfill = new BackfillQueue(db)
    this.gaps = new GapStore(db, { backfill: this.backfill, indexedDids: () => this.#indexedDids() })
    this.forgotten = new ForgottenStore(db)
    this.outbox = new OutboxStore(db)
    this.credentials = new CredentialRecords(db)
    this.sessions = new SessionStore(db)
    this.identities = new IdentityStore(db)
    this.leases = new LeaseStore(db)
  }

  /** One round trip to the server: for health probes. */
  async ping(): Promise<void> {
    await this.db.command({ ping: 1 })
  }

  /** The records of one MongoDB collection (`moods`, or another record type's). */
  records<F extends object>(collection: string): RecordStore<F> {
    let store = this.#records.get(collection)
    if (!store) {
      store = new RecordStore<object>(this.db, collection, { repos: this.repos })
      this.#records.set(collection, store)
    }
    return store as unknown as RecordStore<F>
  }

  async #indexedDids(): Promise<string[]> {
    const all = new Set<string>()
    for (const store of this.#records.values()) for (const did of await store.dids()) all.add(did)
    return [...all]
  }
}
