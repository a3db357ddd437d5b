import { MongoClient, ObjectId } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { Database } from '../../src/store/database.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { RetryWorker } from '../../src/writer/worker.ts'
import { Writer, type WriteResult } from '../../src/writer/writer.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { TestNetwork, type TestAccount } from '../../rig/network.ts'
import { waitFor } from '../../rig/wait.ts'
import { writeCounter } from '../../rig/write-counter.ts'

const t = useTestDb('writer_claims')
const SECRET = 'claims-test-secret-0123456789abcdef'
const POSTS = 100
const PARALLEL = 10

/**
 * One change, one send: the library's immediate attempt and the retry worker (another Writer,
 * as in another process) claim a pending change in MongoDB before sending it. Sends are counted
 * per change at the fetch both writers use, so the PDS's view is what is asserted.
 */
describe('writer: each change is sent to the PDS once', () => {
  let network: TestNetwork
  let accounts: TestAccount[]
  const users = ['auth0|ann', 'auth0|ben']
  const counter = writeCounter()
  let library: Writer
  let workerWriter: Writer
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)

  /** Runs the retry worker (as `moodsync ingest` does, polling often) around `work`. */
  async function withWorker<T>(work: () => Promise<T>): Promise<T> {
    const abort = new AbortController()
    const running = new RetryWorker(workerWriter, { idleMs: 5 }).run(abort.signal)
    try {
      return await work()
    } finally {
      abort.abort()
      await running
    }
  }

  const noPending = () => waitFor(async () => (await moods().countDocuments({ 'atproto.state': 'pending' })) === 0, { timeoutMs: 60_000, what: 'the outbox to drain' })

  async function repoOf(account: TestAccount): Promise<Map<string, string>> {
    const records = new Map<string, string>()
    let cursor: string | undefined
    do {
      const page = await account.agent.com.atproto.repo.listRecords({ repo: account.did, collection: MOOD_NSID, limit: 100, cursor })
      for (const r of page.data.records) records.set(r.uri.split('/').pop()!, (r.value as { mood: string }).mood)
      cursor = page.data.records.length ? page.data.cursor : undefined
    } while (cursor)
    return records
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    accounts = [await network.createAccount('ann'), await network.createAccount('ben')]
    await ensureIndexes(t.db)
    await t.db.collection(COLLECTIONS.users).insertMany(users.map((user, i) => ({ _id: user as never, atproto: { did: accounts[i]!.did, password: accounts[i]!.password } })))
    library = new Writer(t.db, { pdsUrl: network.pdsUrl, secret: SECRET, fetch: counter.fetch })
    workerWriter = new Writer(t.db, { pdsUrl: network.pdsUrl, secret: SECRET, fetch: counter.fetch })
  })
  afterAll(async () => {
    await network?.stop()
  })

  it('two senders claiming the same change at once: exactly one gets it', async () => {
    const store = new Database(t.db).outbox
    const queued = await library.enqueue({ user: users[0]!, text: 'claimed twice' })
    const until = new Date(Date.now() + 60_000)
    const claims = await Promise.all(['a', 'b', 'c', 'd'].map((token) => store.claim(new ObjectId(queued.id), { token, until })))
    expect(claims.filter((c) => c !== null)).toHaveLength(1)
    // Let it go, and let the next test's worker send it like any other.
    await store.release(new ObjectId(queued.id), { token: claims.find((c) => c !== null)!.atproto!.claimedBy!, until })
    await workerWriter.flush()
    expect(counter.sends.get(`put ${queued.rkey} claimed twice`)).toBe(1)
  })

  it(`${POSTS} library posts with the retry worker flushing meanwhile: each is sent once`, async () => {
    const before = counter.total()
    const posts: { res: WriteResult; text: string }[] = []
    await withWorker(async () => {
      for (let round = 0; round < POSTS / PARALLEL; round++) {
        const batch = Array.from({ length: PARALLEL }, (_, i) => ({ user: users[i % users.length]!, text: `race ${round * PARALLEL + i}` }))
        posts.push(...(await Promise.all(batch.map(async (input) => ({ res: await library.post(input), text: input.text })))))
      }
      await noPending()
    })
    // Nothing failed, nothing waits: the PDS was up throughout.
    expect(posts.map((p) => p.res.state).filter((s) => s !== 'written')).toEqual([])
    for (const { res, text } of posts) expect(counter.sends.get(`put ${res.rkey} ${text}`), text).toBe(1)
    expect(counter.total() - before).toBe(POSTS)
  }, 300_000)

  it('edits and deletes queued while the worker is sending: none is lost, none is sent twice', async () => {
    const before = new Map(counter.sends)
    const queued: WriteResult[] = []
    for (let i = 0; i < 60; i++) queued.push(await library.enqueue({ user: users[i % users.length]!, text: `queued ${i}` }))
    // The worker starts on the queue at once; the changes land while its sends are in flight.
    const final = new Map<string, string | null>()
    await withWorker(async () => {
      await Promise.all(
        queued.map(async (q, i) => {
          const user = users[i % users.length]!
          if (i % 3 === 0) {
            const res = await library.edit({ user, id: q.id, text: `edited ${i}` })
            expect(['written', 'pending']).toContain(res.state)
            final.set(q.rkey!, `edited ${i}`)
          } else if (i % 3 === 1) {
            await library.delete({ user, id: q.id })
            final.set(q.rkey!, null)
          } else final.set(q.rkey!, `queued ${i}`)
        }),
      )
      await noPending()
    })
    // The repos hold exactly the final version of every mood, and MongoDB agrees.
    const repos = new Map([...(await repoOf(accounts[0]!)), ...(await repoOf(accounts[1]!))])
    for (const [rkey, text] of final) {
      expect(repos.get(rkey), rkey).toBe(text ?? undefined)
      const doc = await moods().findOne({ 'atproto.rkey': rkey })
      expect(doc?.atproto?.state).toBe('written')
      expect(doc?.atproto?.claimedBy).toBeUndefined()
      if (text === null) expect(doc?.deleted).toBe(true)
      else expect(doc?.mood).toBe(text)
    }
    // Every change sent went out once (a version superseded before any send is never sent);
    // the final change of every mood went out exactly once.
    const sentNow = [...counter.sends].map(([key, n]) => [key, n - (before.get(key) ?? 0)] as const).filter(([, n]) => n > 0)
    expect(sentNow.filter(([, n]) => n > 1)).toEqual([])
    for (const [rkey, text] of final) expect(counter.sends.get(text === null ? `delete ${rkey}` : `put ${rkey} ${text}`), rkey).toBe(1)
  }, 300_000)

  // The library's own connection dies during its first attempt: nothing after the insert can be
  // recorded, as when a serverless function is frozen mid-call. Either the write reached the PDS
  // first (only the note of it is lost) or it never left (its failure cannot be recorded).
  for (const when of ['after the PDS took the write', 'before the write left'] as const) {
    it(`MongoDB lost ${when}: the post answers pending, never an error, and the worker finishes it`, async () => {
      const client = await new MongoClient(t.uri).connect()
      const text = `stored, then MongoDB went away ${when}`
      const dying: typeof globalThis.fetch = async (input, init) => {
        if (!String(input).includes('com.atproto.repo.putRecord')) return counter.fetch(input, init)
        if (when === 'before the write left') {
          await client.close(true)
          throw new TypeError('fetch failed')
        }
        const res = await counter.fetch(input, init)
        await client.close(true)
        return res
      }
      const fragile = new Writer(client.db(t.name), { pdsUrl: network.pdsUrl, secret: SECRET, fetch: dying, claimMs: 1_000 })
      const res = await fragile.post({ user: users[0]!, text })
      expect(res).toMatchObject({ state: 'pending', error: expect.any(String) })
      const key = `put ${res.rkey} ${text}`
      const sentFirst = when === 'after the PDS took the write' ? 1 : 0
      expect(counter.sends.get(key) ?? 0).toBe(sentFirst)
      // Stored, still claimed by the attempt that could not finish: the claim lapses and the
      // worker sends it (putRecord under the same rkey: never a second record).
      expect((await moods().findOne({ _id: new ObjectId(res.id) }))?.atproto).toMatchObject({ state: 'pending', claimedBy: expect.any(String) })
      await waitFor(async () => (await workerWriter.flush()).written === 1, { timeoutMs: 15_000, what: 'the worker to take over the lapsed claim' })
      expect(counter.sends.get(key)).toBe(sentFirst + 1)
      expect([...(await repoOf(accounts[0]!)).keys()].filter((rkey) => rkey === res.rkey)).toHaveLength(1)
    })
  }

  it('a claim left by a sender that died lapses, and the change is then sent once', async () => {
    const store = new Database(t.db).outbox
    const queued = await library.enqueue({ user: users[1]!, text: 'orphaned by a crash' })
    const key = `put ${queued.rkey} orphaned by a crash`
    // What a process that claimed the mood and was killed leaves behind.
    const lapse = new Date(Date.now() + 1_500)
    expect(await store.claim(new ObjectId(queued.id), { token: 'crashed:1', until: lapse })).not.toBeNull()
    // While the claim is live no one else sends it...
    expect((await workerWriter.flush()).retried).toBe(0)
    expect(counter.sends.get(key)).toBeUndefined()
    expect(await workerWriter.nextDueInMs()).toBeGreaterThan(0)
    // ...once it lapses the worker does, once.
    await waitFor(async () => (await workerWriter.flush()).written === 1, { timeoutMs: 15_000, what: 'the lapsed claim to be taken over' })
    expect(Date.now()).toBeGreaterThanOrEqual(lapse.getTime())
    expect(counter.sends.get(key)).toBe(1)
    expect((await moods().findOne({ _id: new ObjectId(queued.id) }))?.atproto).toMatchObject({ state: 'written' })
    expect((await moods().findOne({ _id: new ObjectId(queued.id) }))?.atproto?.claimedUntil).toBeUndefined()
  })
})
