import type { Db } from 'mongodb'
import { COLLECTIONS, type CursorDoc } from './collections.ts'

/** Where the indexer stood: the source's cursor, the instance it came from, and its network time. */
export interface SavedPosition {
  cursor: number
  /** The URL the cursor came from; absent for positions saved before it was recorded. */
  instance?: string
  /** When the network emitted the event at `cursor` (µs since epoch), when known. */
  timeUs?: number
}

/**
 * Saved stream positions, one document per logical source (`jetstream`, `firehose`, `tap`),
 * naming the instance each came from, so a move to another instance is seen, not a restart
 * at the tail.
 */
export class CursorStore {
  readonly #db: Db
  constructor(db: Db) {
    this.#db = db
  }

  async get(source: string): Promise<SavedPosition | undefined> {
    const docs = this.#db.collection<CursorDoc>(COLLECTIONS.cursors)
    const doc = await docs.findOne({ _id: source })
    if (doc) return positionOf(doc)
    // Positions saved before 0.2 are keyed `kind:url`: the newest of the kind carries over.
    const [legacy] = await docs.find({ _id: { $regex: `^${source}:` } }).sort({ updatedAt: -1 }).limit(1).toArray()
    return legacy ? { ...positionOf(legacy), instance: legacy._id.slice(source.length + 1) } : undefined
  }

  /** Callers save only after everything before the position is durable; the store just records it. */
  async save(source: string, position: SavedPosition): Promise<void> {
    const set: Partial<CursorDoc> = { cursor: position.cursor, updatedAt: new Date() }
    if (position.instance !== undefined) set.instance = position.instance
    if (position.timeUs !== undefined) set.timeUs = position.timeUs
    await this.#db.collection<CursorDoc>(COLLECTIONS.cursors).updateOne({ _id: source }, { $set: set }, { upsert: true })
  }
}

function positionOf(doc: CursorDoc): SavedPosition {
  const position: SavedPosition = { cursor: doc.cursor }
  if (doc.instance !== undefined) position.instance = doc.instance
  if (doc.timeUs !== undefined) position.timeUs = doc.timeUs
  return position
}
