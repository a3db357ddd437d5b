import { randomBytes } from 'node:crypto'
import type { Db, MongoServerError } from 'mongodb'

/**
 * What the MongoDB-wire server at the other end can do, where it matters to us. On MongoDB
 * (Atlas) every field is the full capability and nothing adapts. The test rig's servers are
 * reimplementations with known deviations (docs/TEST-RIG.md); the code adapts to them only
 * here, by what it detects, never by configuration.
 */
export interface ServerCapabilities {
  /** For logs and `status`. */
  server: 'mongodb' | 'ferretdb' | 'other'
  /**
   * A partial index's filter is enforced. mongo-java-server accepts a partial unique index but
   * indexes every document, so two documents without an ATProto record would collide.
   */
  partialIndexes: boolean
  /** Statements a write command may carry before the server misbehaves. */
  maxWriteBatch: number
}

/** MongoDB's own limit (`hello.maxWriteBatchSize`); the driver splits above it by itself. */
const MONGODB_WRITE_BATCH = 100_000
/**
 * FerretDB v1 holds one of its 100 SQLite connections per statement until the command ends: a
 * command of 100 statements waits forever and wedges that database. 50 leaves room for others.
 */
const FERRETDB_WRITE_BATCH = 50
const COMMAND_NOT_FOUND = 59

const known = new WeakMap<Db, Promise<ServerCapabilities>>()

/** Detected once per `Db` and remembered. */
export function capabilitiesOf(db: Db): Promise<ServerCapabilities> {
  let found = known.get(db)
  if (!found) {
    found = detect(db)
    // A failure (server down) is not a fact about the server: ask again next time.
    found.catch(() => known.delete(db))
    known.set(db, found)
  }
  return found
}

async function detect(db: Db): Promise<ServerCapabilities> {
  const info = await db.admin().command({ buildInfo: 1 })
  if (typeof info.ferretdbVersion === 'string') return { server: 'ferretdb', partialIndexes: false, maxWriteBatch: FERRETDB_WRITE_BATCH }
  const hello = await db
    .admin()
    .command({ hello: 1 })
    .catch((err: MongoServerError) => {
      if (err.code === COMMAND_NOT_FOUND) return undefined
      throw err
    })
  // Every MongoDB since 4.4.2 answers `hello`; a server that does not is a reimplementation,
  // whose partial-index behaviour is tested rather than assumed.
  if (hello) return { server: 'mongodb', partialIndexes: true, maxWriteBatch: Number(hello.maxWriteBatchSize) || MONGODB_WRITE_BATCH }
  return { server: 'other', partialIndexes: await enforcesPartialFilters(db), maxWriteBatch: MONGODB_WRITE_BATCH }
}

/** Two documents outside a partial unique index's filter: MongoDB keeps both. */
async function enforcesPartialFilters(db: Db): Promise<boolean> {
  const probe = db.collection(`moodsync_probe_${randomBytes(4).toString('hex')}`)
  try {
    await probe.createIndex({ k: 1 }, { unique: true, partialFilterExpression: { k: { $exists: true } } })
    await probe.insertMany([{}, {}])
    return true
  } catch {
    return false
  } finally {
    await probe.drop().catch(() => {})
  }
}
