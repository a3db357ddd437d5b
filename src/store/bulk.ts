import type { AnyBulkWriteOperation, Collection, Db, Document } from 'mongodb'
import { capabilitiesOf } from './capabilities.ts'

/**
 * One ordered bulk write, sent in commands no larger than the server handles (on MongoDB one
 * command, split by the driver at its own limit; on FerretDB v1, chunks of 50: capabilities.ts).
 */
export async function bulkWrite<T extends Document>(db: Db, collection: Collection<T>, ops: AnyBulkWriteOperation<T>[]): Promise<{ matchedCount: number }> {
  if (ops.length === 0) return { matchedCount: 0 }
  const { maxWriteBatch } = await capabilitiesOf(db)
  let matchedCount = 0
  for (let i = 0; i < ops.length; i += maxWriteBatch) {
    const res = await collection.bulkWrite(ops.length > maxWriteBatch ? ops.slice(i, i + maxWriteBatch) : ops, { ordered: true })
    matchedCount += res.matchedCount
  }
  return { matchedCount }
}
