import type { Db, IndexDescription, MongoServerError } from 'mongodb'
import { capabilitiesOf } from './capabilities.ts'
import { COLLECTIONS } from './collections.ts'

/**
 * (DID, rkey) is a record's identity on ATProto (moods first; every record collection gets it). The index is partial so that documents with no
 * ATProto record yet (or legacy ones with only an rkey) do not collide on real MongoDB, where a
 * plain unique index counts a missing field as null.
 */
export const RECORD_KEY_INDEX = {
  key: { 'atproto.did': 1, 'atproto.rkey': 1 },
  name: 'moodsync_did_rkey',
  unique: true,
  partialFilterExpression: { 'atproto.did': { $exists: true }, 'atproto.rkey': { $exists: true } },
} satisfies IndexDescription

/** The outbox: the retry worker asks for due pending writes every few seconds. */
export const OUTBOX_INDEX = {
  key: { 'atproto.state': 1, 'atproto.nextAttemptAt': 1 },
  name: 'moodsync_outbox',
  partialFilterExpression: { 'atproto.state': { $exists: true } },
} satisfies IndexDescription

const INDEXES: Record<string, IndexDescription[]> = {
  [COLLECTIONS.moods]: [OUTBOX_INDEX],
  [COLLECTIONS.quarantine]: [
    { key: { did: 1, rkey: 1 }, name: 'moodsync_quarantine_did_rkey' },
    { key: { at: -1 }, name: 'moodsync_quarantine_at' },
  ],
}

/**
 * Creates moodsync's indexes, with the (DID, rkey) key on every record collection given (the
 * insert-first apply relies on it to refuse a record it already has); a no-op when they exist
 * already, so every start may call it.
 */
export async function ensureIndexes(db: Db, recordCollections: readonly string[] = [COLLECTIONS.moods]): Promise<void> {
  const { partialIndexes } = await capabilitiesOf(db)
  for (const name of recordCollections) await createIndex(db, name, partialIndexes ? RECORD_KEY_INDEX : withoutPartialFilter(RECORD_KEY_INDEX))
  for (const [name, indexes] of Object.entries(INDEXES)) {
    for (const index of indexes) await createIndex(db, name, partialIndexes ? index : withoutPartialFilter(index))
  }
}

/**
 * For a server that does not enforce partial filters (capabilities.ts): a sparse index skips
 * documents that lack every key field, which is what the filter achieves for the documents
 * that have no ATProto record yet. MongoDB itself always gets the partial index.
 */
function withoutPartialFilter(index: IndexDescription): IndexDescription {
  if (!index.partialFilterExpression) return index
  const { partialFilterExpression: _, ...rest } = index
  return { ...rest, sparse: true }
}

const NOT_IMPLEMENTED = 238

async function createIndex(db: Db, collection: string, index: IndexDescription): Promise<void> {
  try {
    await db.collection(collection).createIndexes([index])
  } catch (err) {
    // FerretDB v1 has no sparse indexes either, but its unique indexes already skip documents
    // that lack the field.
    if ((err as MongoServerError).code !== NOT_IMPLEMENTED || !index.sparse) throw err
    const { sparse: _, ...plain } = index
    await db.collection(collection).createIndexes([plain])
  }
}
