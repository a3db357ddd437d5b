import { BSON, MongoBulkWriteError, MongoError, MongoServerError } from 'mongodb'

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

/**
 * Server codes that refuse one document, whatever the server's health: retrying the same
 * batch would fail the same way for ever. (Size limits, field names MongoDB does not store,
 * values it cannot compare or validate.)
 */
const REFUSED_DOCUMENT = new Set([
  2, // BadValue
  9, // FailedToParse
  14, // TypeMismatch
  52, // DollarPrefixedFieldName
  55, // InvalidDBRef
  56, // EmptyFieldName
  57, // DottedFieldName
  121, // DocumentValidationFailure
  10334, // BSONObjectTooLarge
  17419, // document too large for the update
  17420, // document too large after the update
])

/**
 * Whether a failed batch failed because of what is in it rather than because MongoDB is
 * unavailable. A MongoDB error is the input's fault only for a code that refuses a document (or
 * the driver's own BSON refusal); any other MongoDB error (network, timeout, election, pool) is
 * the server's, and the batch is retried. An error with no MongoDB error behind it (a stack
 * overflow, a bug) is never the server's.
 */
export function isInputFault(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if (e instanceof BSON.BSONError) return true
    if (e instanceof MongoBulkWriteError) {
      const errors = Array.isArray(e.writeErrors) ? e.writeErrors : [e.writeErrors]
      return errors.length > 0 && errors.every((w) => REFUSED_DOCUMENT.has(w.code))
    }
    if (e instanceof MongoServerError) return REFUSED_DOCUMENT.has(Number(e.code))
    if (e instanceof MongoError) return false
  }
  return true
}
