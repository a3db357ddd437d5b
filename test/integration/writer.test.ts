import { Writable } from 'node:stream'
import { ObjectId } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NoCredentialsError } from '../../src/errors.ts'
import { createLogger } from '../../src/logger.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import type { IngestService } from '../../src/app/service.ts'
import { InvalidMoodError, StaleEditError, Writer } from '../../src/writer/writer.ts'
import { startIngest } from '../../rig/ingest.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { PdsProxy } from '../../rig/pds-proxy.ts'
import { waitFor } from '../../rig/wait.ts'

const t = useTestDb('writer')
const SECRET = 'writer-test-secret-0123456789abcdef'
/** A write the PDS accepted: `confirmed` when the echo beat the writer's own note of it. */
const DONE = ['written', 'confirmed']

describe('writer: MongoDB first, then the PDS', () => {
  let network: TestNetwork
  let proxy: PdsProxy
  let alice: TestAccount
  let bob: TestAccount
  let ingest: IngestService
  let writer: Writer
  let logText = ''
  const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, done) => ((logText += c.toString()), done()) }) })
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
  const record = (who: TestAccount, rkey: string) =>
    who.agent.com.atproto.repo.getRecord({ repo: who.did, collection: MOOD_NSID, rkey }).then((r) => r.data, () => undefined)
  const listRkeys = async (who: TestAccount) => (await who.agent.com.atproto.repo.listRecords({ repo: who.did, collection: MOOD_NSID, limit: 100 })).data.records.map((r) => r.uri.split('/').pop()!)

  beforeAll(async () => {
    network = await TestNetwork.start()
    proxy = await PdsProxy.start(network.pdsUrl)
    alice = await network.createAccount('alice')
    bob = await network.createAccount('bob')
    await ensureIndexes(t.db)
    await t.db.collection(COLLECTIONS.users).insertMany([
      { _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } },
      { _id: 'auth0|bob' as never, atproto: { did: bob.did, password: bob.password } },
      { _id: 'auth0|nobody' as never },
    ])
    ingest = await startIngest(t, { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl }, { log })
    writer = new Writer(t.db, { pdsUrl: proxy.url, secret: SECRET, log })
  })
  afterAll(async () => {
    await ingest?.destroy()
    await proxy?.stop()
    await network?.stop()
    // Every line any part logged during this file: no password, no token.
    expect(logText.length).toBeGreaterThan(0)
    for (const secret of [alice.password, bob.password, SECRET]) expect(logText).not.toContain(secret)
    expect(logText).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./)
  })

  it('a post appears on both sides with matching rkey and ref, and the echo confirms it', async () => {
    const res = await writer.post({ user: 'auth0|alice', text: 'hello from the platform' })
    expect(DONE).toContain(res.state)
    const rec = await record(alice, res.rkey!)
    expect(rec?.value).toMatchObject({ $type: MOOD_NSID, mood: 'hello from the platform', ref: res.id })
    expect(rec?.cid).toBe(res.cid) // the CID computed before writing is the PDS's
    const doc = await waitFor(async () => {
      const d = await moods().findOne({ _id: new ObjectId(res.id) })
      return d?.atproto?.state === 'confirmed' ? d : undefined
    }, { what: 'the echo to confirm the write' })
    expect(doc).toMatchObject({ user: 'auth0|alice', mood: 'hello from the platform', atproto: { did: alice.did, rkey: res.rkey, cid: rec?.cid } })
    expect(await moods().countDocuments({ 'atproto.rkey': res.rkey })).toBe(1)
  })

  it('a mood over 5,000 bytes is refused with its size before anything is stored; 5,000 bytes are written', async () => {
    const ofBytes = (n: number) => '🌊'.repeat(Math.floor(n / 4)) + 'a'.repeat(n % 4)
    const docsBefore = await moods().countDocuments()
    const recordsBefore = (await listRkeys(alice)).length
    const refusal = writer.post({ user: 'auth0|alice', text: ofBytes(5001) })
    await expect(refusal).rejects.toBeInstanceOf(InvalidMoodError)
    await expect(refusal).rejects.toMatchObject({ kind: 'oversize', message: 'mood is 5,001 bytes, over the published limit of 5,000 bytes' })
    expect(await moods().countDocuments()).toBe(docsBefore)
    expect((await listRkeys(alice)).length).toBe(recordsBefore)

    const res = await writer.post({ user: 'auth0|alice', text: ofBytes(5000) })
    expect(DONE).toContain(res.state)
    expect((await record(alice, res.rkey!))?.value).toEqual({ $type: MOOD_NSID, mood: ofBytes(5000), when: expect.any(String), ref: res.id })
    // An edit past the limit is refused the same way, and leaves the mood as it was.
    await expect(writer.edit({ user: 'auth0|alice', id: res.id, text: `${ofBytes(5000)}!` })).rejects.toMatchObject({ kind: 'oversize', message: 'mood is 5,001 bytes, over the published limit of 5,000 bytes' })
    expect((await moods().findOne({ _id: new ObjectId(res.id) }))?.mood).toBe(ofBytes(5000))
    expect((await record(alice, res.rkey!))?.value).toMatchObject({ mood: ofBytes(5000) })
  })

  it('an edit and a delete follow on both sides; a stale edit is refused', async () => {
    // Each step waits for the indexer's echo first: FerretDB v1 applies an update as a
    // read-modify-write, so an echo landing in the same instant as an edit can undo the edit
    // there (MongoDB applies one document's updates atomically; the guards cover the rest).
    const confirmed = (id: string, cid: string | undefined) =>
      waitFor(async () => {
        const at = (await moods().findOne({ _id: new ObjectId(id) }))?.atproto
        return at?.state === 'confirmed' && at.cid === cid
      }, { what: 'the echo to confirm the write' })
    const res = await writer.post({ user: 'auth0|alice', text: 'first draft' })
    await confirmed(res.id, res.cid)
    const edited = await writer.edit({ user: 'auth0|alice', id: res.id, text: 'second draft', expectCid: res.cid })
    expect(DONE).toContain(edited.state)
    expect((await record(alice, res.rkey!))?.value).toMatchObject({ mood: 'second draft' })
    await confirmed(res.id, edited.cid)
    // An edit made from the old version is stale, here...
    await expect(writer.edit({ user: 'auth0|alice', id: res.id, text: 'from an old tab', expectCid: res.cid })).rejects.toBeInstanceOf(StaleEditError)
    // ...and when another client changed the record on the PDS meanwhile.
    await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey: res.rkey!, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'edited elsewhere', when: new Date().toISOString() } })
    await waitFor(async () => (await moods().findOne({ _id: new ObjectId(res.id) }))?.mood === 'edited elsewhere', { what: 'the other edit to arrive' })
    await expect(writer.edit({ user: 'auth0|alice', id: res.id, text: 'mine', expectCid: edited.cid })).rejects.toBeInstanceOf(StaleEditError)
    expect((await record(alice, res.rkey!))?.value).toMatchObject({ mood: 'edited elsewhere' })

    const gone = await writer.delete({ user: 'auth0|alice', id: res.rkey! })
    expect(DONE).toContain(gone.state)
    expect(await record(alice, res.rkey!)).toBeUndefined()
    expect(await moods().findOne({ _id: new ObjectId(res.id) })).toMatchObject({ deleted: true })
    expect((await writer.delete({ user: 'auth0|alice', id: res.id })).state).not.toBe('failed')
  })

  it('PDS down: posts succeed and stay pending; back up, the worker writes exactly one record each', async () => {
    proxy.mode = { kind: 'down' }
    const posts = []
    for (let i = 0; i < 5; i++) posts.push(await writer.post({ user: 'auth0|bob', text: `offline ${i}` }))
    expect(posts.map((p) => p.state)).toEqual(Array(5).fill('pending'))
    expect(await moods().countDocuments({ user: 'auth0|bob', 'atproto.state': 'pending' })).toBe(5)
    expect(await writer.flush({ now: new Date(Date.now() + 3_600_000) })).toMatchObject({ written: 0, deferred: 5 })

    proxy.mode = { kind: 'pass' }
    const drained = await writer.flush({ now: new Date(Date.now() + 7_200_000) })
    expect(drained).toMatchObject({ written: 5, failed: 0 })
    const rkeys = await listRkeys(bob)
    for (const p of posts) expect(rkeys.filter((r) => r === p.rkey)).toHaveLength(1)
    expect(rkeys).toHaveLength(5)
    await waitFor(async () => (await moods().countDocuments({ user: 'auth0|bob', 'atproto.state': 'confirmed' })) === 5, { what: 'all five confirmed' })
  })

  it('deleting a mood whose record was never written succeeds without one', async () => {
    proxy.mode = { kind: 'down' }
    const res = await writer.post({ user: 'auth0|alice', text: 'never reached the PDS' })
    expect(res.state).toBe('pending')
    proxy.mode = { kind: 'pass' }
    await moods().updateOne({ _id: new ObjectId(res.id) }, { $unset: { 'atproto.uncertain': '' } })
    const gone = await writer.delete({ user: 'auth0|alice', id: res.id })
    expect(DONE).toContain(gone.state)
    expect(await record(alice, res.rkey!)).toBeUndefined()
    const doc = await moods().findOne({ _id: new ObjectId(res.id) })
    expect(doc?.deleted).toBe(true)
    expect(DONE).toContain(doc?.atproto?.state)
  })

  it('an answer lost after the PDS committed: the retry makes no second record', async () => {
    const before = (await listRkeys(bob)).length
    proxy.mode = { kind: 'drop-answer', method: 'com.atproto.repo.putRecord', count: 1 }
    const res = await writer.post({ user: 'auth0|bob', text: 'did it land?' })
    expect(res.state).toBe('pending')
    // Marked as possibly committed, unless the echo already proved it was.
    const after = (await moods().findOne({ _id: new ObjectId(res.id) }))!.atproto!
    expect(after.uncertain === true || after.state === 'confirmed').toBe(true)
    expect(await record(bob, res.rkey!)).toBeDefined() // it did land
    proxy.mode = { kind: 'pass' }
    // Either the retry rewrites it (same rkey, same CID: no new record) or the echo has already
    // confirmed it; both end with one record and a confirmed mood.
    const retried = await writer.flush({ now: new Date(Date.now() + 3_600_000) })
    expect(retried.failed).toBe(0)
    await waitFor(async () => (await moods().findOne({ _id: new ObjectId(res.id) }))?.atproto?.state === 'confirmed', { what: 'confirmation' })
    expect((await listRkeys(bob)).length).toBe(before + 1)
  })

  it('a 429 from the PDS: the writer waits as the headers say, then finishes', async () => {
    proxy.mode = { kind: 'rate-limit', method: 'com.atproto.repo.putRecord', count: 1, resetInSeconds: 2 }
    const res = await writer.post({ user: 'auth0|alice', text: 'slow down' })
    expect(res.state).toBe('pending')
    const doc = await moods().findOne({ _id: new ObjectId(res.id) })
    const due = doc!.atproto!.nextAttemptAt!.getTime()
    expect(due).toBeGreaterThan(Date.now())
    expect(due - Date.now()).toBeLessThanOrEqual(3_000)
    // Before the reset nothing is sent (the budget blocks it, no tight retry loop).
    const callsBefore = proxy.count('com.atproto.repo.putRecord')
    expect(await writer.flush({ now: new Date(due) })).toMatchObject({ deferred: 1 })
    expect(proxy.count('com.atproto.repo.putRecord')).toBe(callsBefore)
    await waitFor(async () => (await writer.flush()).written === 1, { timeoutMs: 10_000, what: 'the write after the reset' })
    expect(await record(alice, res.rkey!)).toBeDefined()
  })

  it('the ingest service drains the outbox by itself (MOODSYNC_OUTBOX=on)', async () => {
    proxy.mode = { kind: 'down' }
    const res = await writer.post({ user: 'auth0|alice', text: 'queued for the worker' })
    expect(res.state).toBe('pending')
    proxy.mode = { kind: 'pass' }
    // Due now, as if its backoff had passed.
    await moods().updateOne({ _id: new ObjectId(res.id) }, { $set: { 'atproto.nextAttemptAt': new Date() } })
    const service = await startIngest(t, { MOODSYNC_OUTBOX: 'on', PDS_URL: proxy.url, MOODSYNC_SECRET: SECRET, JETSTREAM_URL: 'ws://127.0.0.1:9/subscribe' }, { log })
    try {
      await waitFor(async () => (await record(alice, res.rkey!)) !== undefined, { what: 'the worker to write the pending mood' })
      const metrics = await waitFor(async () => {
        const text = await (await fetch(`${service.ops.url}/metrics`)).text()
        return /^moodsync_outbox\{state="pending"\} 0$/m.test(text) ? text : undefined
      }, { what: 'the outbox gauge' })
      expect(metrics).toMatch(/^moodsync_outbox\{state="unconfirmed"\} \d+$/m)
    } finally {
      await service.destroy()
    }
  })

  it('the CLI posts, deletes and reports sync status; the library never reads process.env', async () => {
    const { main } = await import('../../src/cli/main.ts')
    let out = ''
    const stdout = new Writable({ write: (c, _e, done) => ((out += c.toString()), done()) })
    const env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, PDS_URL: proxy.url, MOODSYNC_SECRET: SECRET, LOG_LEVEL: 'silent' }
    expect(await main(['post', '--user', 'auth0|alice', '--json', 'from', 'the', 'terminal'], { stdout, stderr: stdout, env })).toBe(0)
    const posted = JSON.parse(out) as { id: string; rkey: string; state: string }
    expect(DONE).toContain(posted.state)
    expect((await record(alice, posted.rkey))?.value).toMatchObject({ mood: 'from the terminal' })
    out = ''
    expect(await main(['delete', '--user', 'auth0|alice', posted.rkey], { stdout, stderr: stdout, env })).toBe(0)
    expect(out).toMatch(new RegExp(`^deleted ${posted.id} \\(rkey ${posted.rkey}\\): (written|confirmed)`))
    expect(await record(alice, posted.rkey)).toBeUndefined()
    out = ''
    expect(await main(['post', '--user', 'auth0|alice'], { stdout, stderr: stdout, env })).toBe(2)
    expect(out).toMatch(/mood text is missing/)

    const { syncStatus } = await import('../../src/app/library.ts')
    const status = await syncStatus(t.db, { user: 'auth0|alice' })
    expect(status.total).toBe(status.confirmed + status.written + status.pending + status.failed + status.noAccount + status.notSynced)
    expect(status.failed).toBe(0)
  })

  it('seal-credentials encrypts every plain-text password once; the writer then uses the sealed copy', async () => {
    const { main } = await import('../../src/cli/main.ts')
    let out = ''
    const stdout = new Writable({ write: (c, _e, done) => ((out += c.toString()), done()) })
    const env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, MOODSYNC_SECRET: SECRET, LOG_LEVEL: 'silent' }
    expect(await main(['seal-credentials', '--json'], { stdout, stderr: stdout, env })).toBe(0)
    expect(JSON.parse(out)).toEqual({ sealed: 2, unchanged: 0, withoutPassword: 1 })
    out = ''
    expect(await main(['seal-credentials', '--json'], { stdout, stderr: stdout, env })).toBe(0)
    expect(JSON.parse(out)).toEqual({ sealed: 0, unchanged: 2, withoutPassword: 1 })
    const sealed = await t.db.collection(COLLECTIONS.credentials).find().toArray()
    expect(JSON.stringify(sealed)).not.toContain(alice.password)
    // The platform can now drop the plain-text field; logins keep working from the sealed copy.
    await t.db.collection(COLLECTIONS.users).updateOne({ _id: 'auth0|alice' as never }, { $unset: { 'atproto.password': '' } })
    await t.db.collection(COLLECTIONS.sessions).deleteMany({})
    const fresh = new Writer(t.db, { pdsUrl: proxy.url, secret: SECRET, log })
    expect(DONE).toContain((await fresh.post({ user: 'auth0|alice', text: 'after sealing' })).state)
    expect(fresh.sessions.logins).toBe(1)
    // Without the secret there is no password to use: the post fails before anything is stored.
    await t.db.collection(COLLECTIONS.sessions).deleteMany({})
    const noSecret = new Writer(t.db, { pdsUrl: proxy.url, log })
    await expect(noSecret.post({ user: 'auth0|alice', text: 'no key' })).rejects.toBeInstanceOf(NoCredentialsError)
    expect(await moods().countDocuments({ mood: 'no key' })).toBe(0)
  })

  it('bulk: queued moods go through applyWrites, batched by count and by body size', async () => {
    const carol = await network.createAccount('carol')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|carol' as never, atproto: { did: carol.did, password: carol.password } })
    const calls = () => proxy.count('com.atproto.repo.applyWrites')
    const before = calls()
    // 210 moods of 4,900 characters: 200 of them would be a 1 MB body, which the PDS refuses.
    const queued = []
    for (let i = 0; i < 210; i++) queued.push(await writer.enqueue({ user: 'auth0|carol', text: `${i} ${'~'.repeat(4_890)}` }))
    const flushed = await writer.flush()
    expect(flushed).toMatchObject({ written: 210, failed: 0 })
    const batches = calls() - before
    expect(batches).toBeGreaterThanOrEqual(2) // the size bound split what the count bound allowed
    expect(batches).toBeLessThanOrEqual(3)
    const rkeys: string[] = []
    let cursor: string | undefined
    do {
      const page = await carol.agent.com.atproto.repo.listRecords({ repo: carol.did, collection: MOOD_NSID, limit: 100, cursor })
      rkeys.push(...page.data.records.map((r) => r.uri.split('/').pop()!))
      cursor = page.data.records.length ? page.data.cursor : undefined
    } while (cursor)
    expect(new Set(rkeys)).toEqual(new Set(queued.map((q) => q.rkey)))
    expect(rkeys).toHaveLength(210)
  })

  it('a user with no ATProto account gets a state that says so, and no retries', async () => {
    const res = await writer.post({ user: 'auth0|nobody', text: 'no account' })
    expect(res.state).toBe('no-account')
    expect(await moods().findOne({ _id: new ObjectId(res.id) })).toMatchObject({ mood: 'no account', atproto: { state: 'no-account' } })
    expect((await writer.flush()).retried).toBe(0)
  })

  it('1,000 posts by one user cost at most two createSession calls, counted at the PDS', async () => {
    // A database of its own, without the indexer: this test is about sessions, and the
    // MongoDB-wire test server scans a collection for every update.
    const db = t.client.db(`${t.name}_sessions`)
    await ensureIndexes(db)
    await db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } })
    try {
      const fresh = new Writer(db, { pdsUrl: proxy.url, secret: SECRET, log })
      const logins = () => proxy.count('com.atproto.server.createSession')
      const before = logins()
      let written = 0
      for (let i = 0; i < 1000; i++) if ((await fresh.post({ user: 'auth0|alice', text: `bulk ${i}` })).state === 'written') written++
      expect(written).toBe(1000)
      // A cold start (a new serverless instance) reuses the sealed session from MongoDB.
      const cold = new Writer(db, { pdsUrl: proxy.url, secret: SECRET, log })
      expect(DONE).toContain((await cold.post({ user: 'auth0|alice', text: 'cold start' })).state)
      expect(logins() - before).toBeLessThanOrEqual(2)
      expect(fresh.sessions.logins + cold.sessions.logins).toBeLessThanOrEqual(2)
      const sealed = await db.collection(COLLECTIONS.sessions).findOne({ _id: 'auth0|alice' as never })
      expect(sealed).not.toBeNull()
      // A JWT's shape (base64url JSON header, a dot, more); the sealed ciphertext alone can
      // contain "eyJ" by chance (about 1 in 200 sessions did), but never a dot after it.
      expect(JSON.stringify(sealed)).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./)
    } finally {
      await db.dropDatabase()
    }
  }, 900_000)

  it('forget leaves neither side holding the user\'s moods; running it again changes nothing', async () => {
    // A record from another client, that MongoDB may not have yet, is erased too.
    await bob.agent.com.atproto.repo.createRecord({ repo: bob.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'from elsewhere', when: new Date().toISOString() } })
    expect((await listRkeys(bob)).length).toBeGreaterThan(0)
    const first = await writer.forget({ user: 'auth0|bob' })
    expect(first.recordsDeleted).toBeGreaterThan(0)
    expect(await listRkeys(bob)).toEqual([])
    await waitFor(async () => (await moods().countDocuments({ $or: [{ user: 'auth0|bob' }, { 'atproto.did': bob.did }] })) === 0, { what: 'no MongoDB documents left' })
    // The deletes' echoes must not bring anything back; a second run does nothing.
    const again = await writer.forget({ user: 'auth0|bob' })
    expect(again).toEqual({ recordsDeleted: 0, documentsDeleted: 0 })
    expect(await moods().countDocuments({ $or: [{ user: 'auth0|bob' }, { 'atproto.did': bob.did }] })).toBe(0)

    // A replay of bob's whole stream (as after a restart, or echoes arriving late) must not
    // bring any erased mood back; a mood bob posts after being forgotten is indexed again.
    await ingest.destroy()
    await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: 'firehose' as never }, { $set: { cursor: 0, instance: network.firehoseUrl } }, { upsert: true })
    const after = await bob.agent.com.atproto.repo.createRecord({ repo: bob.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'after forget', when: new Date().toISOString() } })
    ingest = await startIngest(t, { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl }, { log })
    const afterRkey = after.data.uri.split('/').pop()!
    await waitFor(() => moods().findOne({ 'atproto.rkey': afterRkey }).then((d) => d ?? undefined), { timeoutMs: 90_000, what: 'the new mood after forget' })
    expect(await moods().countDocuments({ 'atproto.did': bob.did })).toBe(1)
  })
})
