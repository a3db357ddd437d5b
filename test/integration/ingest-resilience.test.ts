import { spawn, type ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { COLLECTIONS } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { startIngest } from '../../rig/ingest.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { compareWithRepos, inSync } from '../../rig/repos.ts'
import { TcpProxy } from '../../rig/tcp-proxy.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

const t = useTestDb('ingest_resilience')
const CRASH_TRIALS = Number(process.env.MOODSYNC_CRASH_TRIALS ?? 5)

/** Writes moods (creates, edits, deletes) until stopped; returns how many ops it made. */
function churn(accounts: readonly TestAccount[]) {
  let stop = false
  let ops = 0
  const done = (async () => {
    const live: { who: TestAccount; rkey: string }[] = []
    while (!stop) {
      const who = accounts[ops % accounts.length]!
      const roll = Math.random()
      if (roll < 0.15 && live.length > 0) {
        const [victim] = live.splice(Math.floor(Math.random() * live.length), 1)
        await victim!.who.agent.com.atproto.repo.deleteRecord({ repo: victim!.who.did, collection: MOOD_NSID, rkey: victim!.rkey })
      } else if (roll < 0.3 && live.length > 0) {
        const target = live[Math.floor(Math.random() * live.length)]!
        await target.who.agent.com.atproto.repo.putRecord({ repo: target.who.did, collection: MOOD_NSID, rkey: target.rkey, record: { $type: MOOD_NSID, ref: clientRef(), mood: `edit ${ops}`, when: new Date().toISOString() } })
      } else {
        const res = await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: `mood ${ops}`, when: new Date().toISOString() } })
        live.push({ who, rkey: res.data.uri.split('/').pop()! })
      }
      ops++
    }
  })()
  return {
    stop: async () => {
      stop = true
      await done
      return ops
    },
  }
}

/** A database of its own reached through a TCP proxy in front of the test server: one that can be cut or frozen. */
async function behindProxy(suffix: string, params: Record<string, string> = {}) {
  const mongo = new URL(t.uri)
  const proxy = await TcpProxy.start({ host: mongo.hostname, port: Number(mongo.port || 27017) })
  const proxied = new URL(t.uri)
  proxied.port = String(proxy.port)
  proxied.searchParams.set('directConnection', 'true')
  for (const [k, v] of Object.entries(params)) proxied.searchParams.set(k, v)
  return { proxy, db: { ...t, uri: proxied.toString(), name: `${t.name}_${suffix}` } }
}

describe('ingest resilience', () => {
  let network: TestNetwork
  let accounts: TestAccount[]
  beforeAll(async () => {
    network = await TestNetwork.start()
    accounts = [await network.createAccount('crash1'), await network.createAccount('crash2')]
    await ensureIndexes(t.db)
  })
  afterAll(() => network?.stop())

  it(`survives kill -9 at random moments (${CRASH_TRIALS} trials): nothing missing, doubled or stale`, async () => {
    // Start from the beginning of the PDS stream so nothing written before the first start is missed.
    await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: 'firehose' as never }, { $set: { cursor: 0, instance: network.firehoseUrl } }, { upsert: true })
    const env = { ...process.env, MONGODB_URI: t.uri, MONGODB_DB: t.name, MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl, MOODSYNC_HTTP_PORT: '0', LOG_LEVEL: 'warn' }
    const spawnIngest = (): ChildProcess => spawn(process.execPath, ['bin/moodsync.js', 'ingest'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    const writer = churn(accounts)
    const kills: number[] = []
    try {
      for (let trial = 0; trial < CRASH_TRIALS; trial++) {
        const child = spawnIngest()
        const exited = new Promise((resolve) => child.once('exit', resolve))
        // Let it run a random while (it starts, replays, applies, saves cursors), then kill -9.
        const lifetime = 400 + Math.random() * 2000
        await new Promise((resolve) => setTimeout(resolve, lifetime))
        child.kill('SIGKILL')
        await exited
        kills.push(Math.round(lifetime))
      }
    } finally {
      await writer.stop()
    }
    // A last run with no more writes must converge to exactly the repos' state.
    const child = spawnIngest()
    let stderr = ''
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
    try {
      const comparison = await waitFor(async () => {
        const c = await compareWithRepos(t.db, accounts)
        return inSync(c) ? c : undefined
      }, { timeoutMs: 90_000, what: `MongoDB to converge after ${kills.length} kills at ${kills.join(', ')} ms` }).catch(async (err) => {
        throw new Error(`${(err as Error).message}\n${JSON.stringify(await compareWithRepos(t.db, accounts))}\n${stderr.slice(-2000)}`)
      })
      expect(comparison).toEqual({ missing: [], extra: [], stale: [], duplicates: [] })
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
    expect(await t.db.collection(COLLECTIONS.moods).countDocuments({ 'atproto.did': { $in: accounts.map((a) => a.did) } })).toBeGreaterThan(0)
  })

  it('MongoDB stopped and restarted mid-stream: it converges, and the cursor never passes an unapplied event', async () => {
    // moodsync's default server selection timeout (10 s). With `serverSelectionTimeoutMS=2000`
    // in the URI and the CPU busy, the driver was seen never to select the server again after
    // the outage (48 selection errors in a row): an open question, in the notes.
    const { proxy, db } = await behindProxy('outage')
    await t.client.db(db.name).collection(COLLECTIONS.cursors).insertOne({ _id: 'firehose' as never, cursor: 0, instance: network.firehoseUrl, updatedAt: new Date() })
    const service = await startIngest(db, { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl })
    const state = service.indexer.state
    const violations: string[] = []
    const watch = setInterval(() => {
      if ((state.savedCursor ?? 0) > (state.appliedCursor ?? 0)) violations.push(`saved ${state.savedCursor} > applied ${state.appliedCursor}`)
    }, 5)
    try {
      const outageDb = t.client.db(db.name)
      await waitFor(() => state.appliedCursor !== undefined && state.appliedCursor > 0, { what: 'the replay to start' })
      await proxy.down()
      const writer = churn(accounts)
      await waitFor(() => state.storeFailingSince !== undefined, { what: 'the indexer to notice MongoDB is down' })
      // From here nothing can become durable: the applied cursor must not move, however long
      // the outage, while the indexer keeps retrying the same batch.
      const appliedAtOutage = state.appliedCursor
      const errorsAtOutage = await valueOf(service.indexer.metrics.storeErrors)
      await waitFor(async () => (await valueOf(service.indexer.metrics.storeErrors)) >= errorsAtOutage + 2, { timeoutMs: 60_000, what: 'two more failed retries' })
      const ops = await writer.stop()
      expect(ops).toBeGreaterThan(0)
      expect(state.appliedCursor).toBe(appliedAtOutage)
      const health = await (await fetch(`${service.ops.url}/healthz`)).json()
      expect(health).toMatchObject({ storeFailing: true })

      await proxy.up()
      // The whole PDS history replays after the outage (it started from cursor 0): on FerretDB
      // (~15 ms an upsert), beside the other test files, that can take a minute.
      await waitFor(async () => inSync(await compareWithRepos(outageDb, accounts)), { timeoutMs: 150_000, what: 'convergence after MongoDB came back' }).catch(async (err) => {
        const busy = state.storeBusySince === undefined ? 'none' : `${Date.now() - state.storeBusySince} ms`
        throw new Error(`${(err as Error).message}: applied cursor ${state.appliedCursor}, store failing since ${state.storeFailingSince ?? 'never'}, ${await valueOf(service.indexer.metrics.storeErrors)} store errors, operation in flight ${busy}, last error ${state.lastStoreError}; ${JSON.stringify(await compareWithRepos(outageDb, accounts)).slice(0, 500)}`)
      })
      expect(state.storeFailingSince).toBeUndefined()
      expect(await valueOf(service.indexer.metrics.storeErrors)).toBeGreaterThan(0)
    } finally {
      clearInterval(watch)
      await service.destroy()
      await proxy.stop()
      await t.client.db(db.name).dropDatabase()
    }
    expect(violations).toEqual([])
  }, 300_000)

  it('MongoDB that hangs (answers nothing) is reported like one that refuses, within the same limit; shutdown does not wait on it', async () => {
    const { proxy, db } = await behindProxy('hung')
    const LIMIT_S = 1
    const service = await startIngest(db, { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl, MOODSYNC_MAX_DISCONNECTED_SECONDS: String(LIMIT_S) })
    const get = async (path: string) => {
      const res = await fetch(`${service.ops.url}${path}`)
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    let destroyed = false
    try {
      await waitFor(async () => (await get('/readyz')).status === 200, { what: '/readyz to be 200 first' })
      proxy.freeze()
      const frozenAt = performance.now()
      const hung = await waitFor(async () => {
        const h = await get('/healthz')
        return h.status === 503 ? h.body : undefined
      }, { what: '/healthz to report the hung MongoDB', timeoutMs: 15_000 })
      const detectedMs = performance.now() - frozenAt
      expect(hung).toMatchObject({ storeFailing: true, problems: expect.arrayContaining([expect.stringMatching(/^MongoDB failing or not answering/)]) })
      expect(hung.storeError).toMatch(/no answer to a ping/)
      expect((await get('/readyz')).status).toBe(503)
      // The limit plus one probe interval (a quarter of it) and a little scheduling.
      expect(detectedMs).toBeLessThan((LIMIT_S * 1.25 + 1) * 1000)
      console.log(`hung MongoDB: /healthz 503 ${Math.round(detectedMs)} ms after it froze (MOODSYNC_MAX_DISCONNECTED_SECONDS ${LIMIT_S})`)
      const stopping = performance.now()
      await service.destroy()
      destroyed = true
      expect(performance.now() - stopping).toBeLessThan(10_000)
    } finally {
      if (!destroyed) await service.destroy()
      await proxy.stop()
      await t.client.db(db.name).dropDatabase()
    }
  })
})
