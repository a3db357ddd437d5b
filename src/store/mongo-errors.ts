import { MongoBulkWriteError, MongoServerError } from 'mongodb'

/**
 * A write refused by a unique index. MongoDB answers code 11000; FerretDB does for inserts,
 * but an update that collides surfaces as its SQLite backend's "UNIQUE constraint failed".
 */
export function isDuplicateKey(err: unknown): boolean {
  if (err instanceof MongoBulkWriteError) {
    const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]
    return err.code === 11000 || errors.some((e) => e.code === 11000 || /UNIQUE constraint failed/.test(e.errmsg ?? '')) || /UNIQUE constraint failed/.test(err.message)
  }
  return err instanceof MongoServerError && (err.code === 11000 || /UNIQUE constraint failed/.test(err.message))
}
