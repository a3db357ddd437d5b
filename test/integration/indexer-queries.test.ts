import { randomBytes } from 'node:crypto'
import { TID } from '@atproto/common-web'
import { MongoClient, ObjectId, type CommandStartedEvent, type Db } from 'mongodb'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import type { IngestEvent } from '../../src/ingest/events.ts'
import { Indexer } from '../../src/ingest/indexer.ts'
import { capabilitiesOf } from '../../src/store/capabilities.ts'
import { COLLECTIONS } from '../../src/store/collections.ts'
import { Database } from '../../src/store/database.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { clientRef } from '../../rig/client-ref.ts'
import { scriptedSource } from '../../rig/scripted-source.ts'

/**
 * Issue 12, target 4: no query per repo where one per batch serves. A batch in which every one
 * of N DIDs posts, changes handle, changes account status (hidden, restored then posting again,
 * deleted) and asks for a resync costs the same number of MongoDB commands for N = 4 as for
 * N = 40, counted with the driver's command monitoring. (40 keeps every write under FerretDB's
 * 50 statements a command, so the count holds there too.)
 */
let client: MongoClient
let dbs: Db[] = []
const commands: CommandStartedEvent[] = []
/** Not the batch's: the driver's own (handshakes, sessions) and the cursor saves, which run beside it. */
const IGNORED = new Set(['hello', 'isMaster', 'ismaster', 'ping', 'endSessions', 'buildInfo', 'buildinfo', 'getParameter', 'listIndexes', 'createIndexes'])

beforeAll(async () => {
  client = await new MongoClient(inject('mongoUri'), { monitorCommands: true, serverSelectionTimeoutMS: 10_000 }).connect()
  client.on('commandStarted', (event) => {
    if (IGNORED.has(event.commandName) || event.command[event.commandName] === COLLECTIONS.cursors) return
    commands.push(event)
  })
})
afterAll(async () => {
  for (const db of dbs) await db.dropDatabase().catch(() => {})
  await client?.close()
})

const did = (n: number) => `did:plc:${n.toString(32).padStart(24, 'a')}`
const mood = (rkey: string, text: string) => ({ action: 'upsert' as const, collection: MOOD_NSID, rkey, cid: `bafy${rkey}`, record: { $type: MOOD_NSID, ref: clientRef(), mood: text, when: '2026-01-01T00:00:00Z' } })

const scripted = (events: IngestEvent[]) => scriptedSource(events, { oneRead: true })

/** Runs the scenario for `n` DIDs; returns the commands the batch holding it sent, by name and collection. */
async function scenario(n: number) {
  const db = client.db(`t_indexer_queries_${n}_${randomBytes(3).toString('hex')}`)
  dbs.push(db)
  await ensureIndexes(db)
  await capabilitiesOf(db)
  const dids = Array.from({ length: n }, (_, i) => did(1000 * n + i))
  // Even DIDs are platform users; every DID already has one mood, so each status change has something to change.
  await db.collection(COLLECTIONS.users).insertMany(dids.flatMap((d, i) => (i % 2 === 0 ? [{ _id: `auth0|${i}` as never, atproto: { did: d } }] : [])))
  await db.collection(COLLECTIONS.moods).insertMany(dids.map((d) => ({ _id: new ObjectId(), user: null, mood: 'before', when: new Date(), atproto: { did: d, rkey: TID.nextStr(), cid: 'bafyold', rev: TID.nextStr() } })))

  let cursor = 1
  // A first commit of another DID: while its batch waits for MongoDB, the rest is read ahead into the next one.
  const events: IngestEvent[] = [{ kind: 'commit', cursor: cursor++, did: did(999_999), rev: TID.nextStr(), ops: [mood(TID.nextStr(), 'first')] }]
  const posted = new Map<string, string[]>()
  const post = (d: string) => {
    const rkey = TID.nextStr()
    posted.set(d, [...(posted.get(d) ?? []), rkey])
    events.push({ kind: 'commit', cursor: cursor++, did: d, rev: rkey, ops: [mood(rkey, `from ${d}`)] })
  }
  dids.forEach((d, i) => {
    post(d)
    events.push({ kind: 'identity', cursor: cursor++, did: d, handle: `user${i}.test` })
    if (i % 3 === 0) events.push({ kind: 'account', cursor: cursor++, did: d, active: false, status: 'deactivated' })
    if (i % 3 === 1) {
      events.push({ kind: 'account', cursor: cursor++, did: d, active: true })
      post(d)
    }
    if (i % 3 === 2) events.push({ kind: 'account', cursor: cursor++, did: d, active: false, status: 'deleted' })
    events.push({ kind: 'resync', cursor: cursor++, did: d, reason: 'sync', onlyIfKnown: true })
  })

  const store = new Database(db)
  const batches: { size: number; commands: CommandStartedEvent[] }[] = []
  let seen = commands.length
  const indexer = new Indexer({
    store,
    source: scripted(events),
    onApplied: (batch) => {
      batches.push({ size: batch.length, commands: commands.slice(seen).filter((c) => c.databaseName === db.databaseName) })
      seen = commands.length
    },
  })
  await indexer.run(new AbortController().signal)
  const big = batches.reduce((a, b) => (b.size > a.size ? b : a))
  // The scripted source yields without waiting: all but the first event or two share a batch.
  expect(big.size).toBeGreaterThanOrEqual(events.length - 2)

  // What the batch did, checked: each DID's mood(s) are stored and hidden, restored or deleted as its status says.
  const moods = db.collection(COLLECTIONS.moods)
  for (const [i, d] of dids.entries()) {
    const docs = await moods.find({ 'atproto.did': d }).toArray()
    expect(docs.length).toBe(1 + posted.get(d)!.length)
    if (i % 3 === 0) expect(docs.every((doc) => doc.deleted === true && doc.atproto.hidden === 'deactivated')).toBe(true)
    if (i % 3 === 1) expect(docs.every((doc) => doc.deleted !== true)).toBe(true)
    if (i % 3 === 2) expect(docs.every((doc) => doc.deleted === true && doc.atproto.hidden === undefined)).toBe(true)
  }
  expect(await db.collection(COLLECTIONS.identities).countDocuments()).toBe(n)
  expect(await db.collection(COLLECTIONS.backfill).countDocuments()).toBe(n)
  return big.commands.map((c) => `${c.commandName} ${String(c.command[c.commandName])}`)
}

describe('the indexer asks MongoDB once per batch, not once per DID', () => {
  it('a batch of 40 DIDs (commits, identities, account changes, resyncs) sends as many commands as one of 4', async () => {
    const few = await scenario(4)
    const many = await scenario(40)
    expect(many).toEqual(few)
    // users and forgotten; the stage before and after the status changes (inserts, hide, restore,
    // delete); the handles' and resyncs' owners, the handles, the backfill queue.
    expect(many.length).toBeLessThanOrEqual(16)
  })
})
