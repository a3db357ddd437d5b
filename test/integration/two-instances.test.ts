import { spawn, type ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWriter } from '../../src/app/app.ts'
import { COLLECTIONS, type LeaseDoc, type MoodDoc } from '../../src/store/collections.ts'
import { Database } from '../../src/store/database.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import type { Writer } from '../../src/writer/writer.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { createMood, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { PdsProxy } from '../../rig/pds-proxy.ts'
import { compareWithRepos, inSync } from '../../rig/repos.ts'
import { waitFor } from '../../rig/wait.ts'

const t = useTestDb('two_instances')
const LEASE_S = 2

interface Instance {
  child: ChildProcess
  pid: number
  exited: Promise<number | null>
  stderr: () => string
  healthUrl: Promise<string>
}

// A rolling deploy or a second replica: two `moodsync ingest` processes on one database.
describe('two moodsync ingest processes on one database', () => {
  let network: TestNetwork
  let pds: PdsProxy
  let alice: TestAccount
  let writer: Writer
  const instances: Instance[] = []

  const spawnIngest = (): Instance => {
    const env = {
      ...process.env,
      MONGODB_URI: t.uri,
      MONGODB_DB: t.name,
      MOODSYNC_SOURCE: 'firehose',
      FIREHOSE_URL: network.firehoseUrl,
      PLC_URL: network.plcUrl,
      PDS_URL: pds.url,
      MOODSYNC_HTTP_PORT: '0',
      MOODSYNC_LEASE_SECONDS: String(LEASE_S),
      LOG_LEVEL: 'info',
    }
    const child = spawn(process.execPath, ['bin/moodsync.js', 'ingest'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    let announce: (url: string) => void = () => {}
    const healthUrl = new Promise<string>((resolve) => (announce = resolve))
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString()
      const url = /health (http:\/\/\S+)\/healthz/.exec(err)?.[1]
      if (url) announce(url)
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    return { child, pid: child.pid!, exited, stderr: () => err, healthUrl }
  }
  const lease = () => t.db.collection<LeaseDoc>(COLLECTIONS.leases).findOne({ _id: 'jobs' })
  const holderPid = async () => Number((await lease())?.holder.split(':')[1])
  const jobsOf = async (instance: Instance) => {
    const url = await Promise.race([instance.healthUrl, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no health URL announced:\n${instance.stderr()}`)), 20_000))])
    return ((await (await fetch(`${url}/healthz`)).json()) as { jobs: string }).jobs
  }
  /** Queued, not sent: only a retry worker (the lease holder's) writes these. */
  const enqueue = async (n: number, label: string) => {
    const ids: string[] = []
    for (let i = 0; i < n; i++) ids.push((await writer.enqueue({ user: 'auth0|alice', text: `${label} ${i}` })).rkey!)
    return ids
  }
  const confirmed = (rkeys: readonly string[]) =>
    waitFor(async () => (await t.db.collection<MoodDoc>(COLLECTIONS.moods).countDocuments({ 'atproto.rkey': { $in: [...rkeys] }, 'atproto.state': 'confirmed' })) === rkeys.length, {
      what: `${rkeys.length} queued moods written and echoed`,
      timeoutMs: 30_000,
    })
  const sentTwice = () => {
    const counts = new Map<string, number>()
    for (const rkey of pds.writes) counts.set(rkey, (counts.get(rkey) ?? 0) + 1)
    return [...counts].filter(([, n]) => n > 1)
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    pds = await PdsProxy.start(network.pdsUrl)
    alice = await network.createAccount('alice')
    await ensureIndexes(t.db)
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } })
    writer = createWriter(new Database(t.db), { pdsUrl: pds.url })
  })
  afterAll(async () => {
    for (const instance of instances) instance.child.kill('SIGKILL')
    await pds?.stop()
    await network?.stop()
  })

  it('one holds the lease and runs the jobs; when it is killed the other takes over; every write is sent once and MongoDB equals the repo', async () => {
    instances.push(spawnIngest(), spawnIngest())
    const holder = await waitFor(async () => {
      const pid = await holderPid()
      return instances.find((i) => i.pid === pid)
    }, { what: 'one process to take the lease', timeoutMs: 30_000 })
    const standby = instances.find((i) => i !== holder)!
    expect(await jobsOf(holder)).toMatch(/^running here/)
    expect(await jobsOf(standby)).toBe('another process holds the lease')

    // Both index (a mood written by another client appears), one writes the queued moods.
    const elsewhere = await createMood(alice, 'from another client')
    const first = await enqueue(8, 'queued before the kill')
    await confirmed(first)
    await waitFor(async () => (await t.db.collection<MoodDoc>(COLLECTIONS.moods).countDocuments({ 'atproto.rkey': elsewhere.rkey })) === 1, { what: 'the other client’s mood' })

    holder.child.kill('SIGKILL')
    const killedAt = performance.now()
    await holder.exited
    await waitFor(async () => (await holderPid()) === standby.pid, { what: 'the standby to take the lease', timeoutMs: LEASE_S * 1000 * 5 })
    const failoverMs = performance.now() - killedAt
    expect(failoverMs).toBeLessThan(LEASE_S * 1000 * 2)
    expect(await jobsOf(standby)).toMatch(/^running here/)

    const second = await enqueue(8, 'queued after the kill')
    await createMood(alice, 'another, after the kill')
    await confirmed(second)
    expect(sentTwice()).toEqual([])
    expect(pds.writes.filter((rkey) => first.includes(rkey) || second.includes(rkey)).sort()).toEqual([...first, ...second].sort())
    await waitFor(async () => inSync(await compareWithRepos(t.db, [alice])), { what: 'MongoDB to equal the repo' })
    expect(await compareWithRepos(t.db, [alice])).toEqual({ missing: [], extra: [], stale: [], duplicates: [] })
    console.log(`lease failover: the standby held the lease ${Math.round(failoverMs)} ms after the holder was killed (MOODSYNC_LEASE_SECONDS ${LEASE_S})`)

    standby.child.kill('SIGTERM')
    expect(await standby.exited).toBe(0)
    // A clean stop gives the lease up at once.
    expect(await lease()).toBeNull()
  }, 120_000)
})
