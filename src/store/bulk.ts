import type { AnyBulkWriteOperation, Collection, Document } from 'mongodb'

/**
 * FerretDB v1 keeps each statement of an update command open until the command ends, from a
 * pool of 100 SQLite connections: a command with 100 statements waits forever and wedges the
 * database. Sending ordered chunks of 50 costs real MongoDB a few round trips per thousand.
 */
export const BULK_CHUNK = 50

export async function bulkWriteChunked<T extends Document>(collection: Collection<T>, ops: AnyBulkWriteOperation<T>[]): Promise<{ matchedCount: number }> {
  let matchedCount = 0
  for (let i = 0; i < ops.length; i += BULK_CHUNK) {
    const res = await collection.bulkWrite(ops.slice(i, i + BULK_CHUNK), { ordered: true })
    matchedCount += res.matchedCount
  }
  return { matchedCount }
}
