import { randomBytes } from 'node:crypto'
import { MongoClient, type Db } from 'mongodb'
import { afterAll, beforeAll, inject } from 'vitest'

export interface TestDb {
  uri: string
  client: MongoClient
  db: Db
  name: string
}

/** A database of its own for the calling test file, dropped after its last test. */
export function useTestDb(label: string): TestDb {
  const handle = {} as TestDb
  beforeAll(async () => {
    handle.uri = inject('mongoUri')
    handle.name = `t_${label.replace(/[^a-z0-9]/gi, '_').slice(0, 30)}_${randomBytes(3).toString('hex')}`
    handle.client = await new MongoClient(handle.uri, { serverSelectionTimeoutMS: 10_000 }).connect()
    handle.db = handle.client.db(handle.name)
  })
  afterAll(async () => {
    await handle.db?.dropDatabase().catch(() => {})
    await handle.client?.close()
  })
  return handle
}

/** Every document of `collections`, in `_id` order, as one string: equal snapshots mean nothing changed. */
export async function snapshot(db: Db, collections: readonly string[]): Promise<string> {
  return JSON.stringify(await Promise.all(collections.map((name) => db.collection(name).find().sort({ _id: 1 }).toArray())))
}
