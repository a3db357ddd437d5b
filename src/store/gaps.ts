import type { Collection, Db } from 'mongodb'
import type { BackfillQueue } from './backfill-queue.ts'
import { COLLECTIONS, type GapDoc } from './collections.ts'
import { idOf } from './quarantine.ts'

/** Missed stretches of the stream (a cursor too old to resume): each needs a backfill. */
export class GapStore {
  readonly #docs: Collection<GapDoc>
  readonly #backfill: BackfillQueue
  readonly #indexedDids: () => Promise<string[]>

  /** `indexedDids`: every repo with records here, all of which may have missed events. */
  constructor(db: Db, deps: { backfill: BackfillQueue; indexedDids: () => Promise<string[]> }) {
    this.#docs = db.collection<GapDoc>(COLLECTIONS.gaps)
    this.#backfill = deps.backfill
    this.#indexedDids = deps.indexedDids
  }

  /** Records the gap (once, however often it is replayed) and queues every indexed repo. */
  async record(gap: Omit<GapDoc, '_id' | 'at'>): Promise<number> {
    const _id = idOf([gap.source, gap.requested, gap.cursor, gap.reason])
    await this.#docs.updateOne({ _id }, { $setOnInsert: { ...gap, at: new Date() } }, { upsert: true })
    return this.#backfill.add(await this.#indexedDids(), gap.reason)
  }
}
