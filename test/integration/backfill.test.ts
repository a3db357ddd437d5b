import { TID } from '@atproto/common-web'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdResolver } from '../../src/atproto/identity.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { backfill, type BackfillReport } from '../../src/reconcile/backfill.ts'
import { RepoReader, RepoUnavailableError } from '../../src/atproto/repo-reader.ts'
import { RepoSync } from '../../src/reconcile/repo-sync.ts'
import { BackfillWorker } from '../../src/reconcile/worker.ts'
import { RevChecker } from '../../src/reconcile/revs.ts'
import { discoverRepos } from '../../src/reconcile/targets.ts'
import { COLLECTIONS, type BackfillDoc, type MoodDoc } from '../../src/store/collections.ts'
import { Store } from '../../src/store/store.ts'
import { cliRunner } from '../../rig/cli.ts'
import { CollectionDirectoryDaemon } from '../../rig/collectiondir.ts'
import { RelayServer } from '../../rig/relay.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { startIngest } from '../../rig/ingest.ts'
import { compareWithRepos } from '../../rig/repos.ts'
import { waitFor } from '../../rig/wait.ts'

const t = useTestDb('backfill')

describe('backfill: moods loaded from the repos themselves', () => {
  let network: TestNetwork
  let relay: RelayServer
  // Bluesky's collection directory on the relay: what answers listReposByCollection in production.
  let directory: CollectionDirectoryDaemon
  let carol: TestAccount // a platform user
  let dave: TestAccount // posts moods from another app; no platform user
  let erin: TestAccount // has an account but no moods
  let env: Record<string, string>
  let store: Store
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
  const snapshotDb = async () => JSON.stringify(await moods().find().sort({ _id: 1 }).toArray())

  const { run, json } = cliRunner(() => env)
  const runJson = (...argv: string[]) => json<BackfillReport>(...argv)
  const post = async (who: TestAccount, count: number, extra: Record<string, unknown> = {}) => {
    const rkeys = Array.from({ length: count }, () => TID.nextStr())
    await who.agent.com.atproto.repo.applyWrites({
      repo: who.did,
      writes: rkeys.map((rkey, i) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey, value: { $type: MOOD_NSID, ref: clientRef(), mood: `${who.handle} ${i}`, when: new Date().toISOString(), ...extra } })),
    })
    return rkeys
  }
  const newSync = (opts: { fetch?: typeof globalThis.fetch; maxCarBytes?: number } = {}) => {
    const reader = new RepoReader({ collection: MOOD_NSID, idResolver: createIdResolver(network.plcUrl), ...opts })
    return { reader, sync: new RepoSync({ store, reader }) }
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    directory = await CollectionDirectoryDaemon.start({ relayUrl: relay.url })
    carol = await network.createAccount('carol')
    dave = await network.createAccount('dave')
    erin = await network.createAccount('erin')
    env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, PDS_URL: network.pdsUrl, PLC_URL: network.plcUrl, LOG_LEVEL: 'warn' }
    store = new Store({ mongodb: { uri: t.uri, db: t.name } })
    await store.start()
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|carol' as never, atproto: { did: carol.did } })
    await post(carol, 25)
    await post(dave, 10)
    await erin.agent.com.atproto.repo.createRecord({ repo: erin.did, collection: 'app.bsky.feed.post', record: { text: 'not a mood', createdAt: new Date().toISOString() } })
  })
  afterAll(async () => {
    await store?.destroy()
    await directory?.stop()
    await relay?.stop()
    await network?.stop()
  })

  it('discovers every repo holding moods (listReposByCollection, paged) and loads them', async () => {
    await directory.waitForRepo(carol.did)
    await directory.waitForRepo(dave.did)
    const listed: string[] = []
    let pages = 0
    const counting: typeof fetch = (input, init) => (pages++, fetch(input, init))
    for await (const did of discoverRepos(directory.url, { pageSize: 1, fetch: counting })) listed.push(did)
    expect(listed.sort()).toEqual([carol.did, dave.did].sort())
    expect(pages).toBeGreaterThanOrEqual(2)

    const res = await runJson('backfill', '--discover', directory.url)
    expect(res.code).toBe(0)
    expect(res.repos).toEqual({ synced: 2, unchanged: 0, hidden: 0, failed: 0 })
    expect(res.records).toBe(35)
    expect(res.applied.inserted).toBe(35)
    expect(await moods().countDocuments({ user: 'auth0|carol', 'atproto.did': carol.did })).toBe(25)
    expect(await moods().countDocuments({ user: null, 'atproto.did': dave.did })).toBe(10)
    expect(await compareWithRepos(t.db, [carol, dave])).toEqual({ missing: [], extra: [], stale: [], duplicates: [] })
  })

  it('a second run over unchanged repos reads nothing and writes nothing', async () => {
    const before = await snapshotDb()
    const res = await runJson('backfill', '--did', carol.did, '--did', dave.did)
    expect(res.repos).toEqual({ synced: 0, unchanged: 2, hidden: 0, failed: 0 })
    expect(res.bytes).toBe(0)
    expect(Object.values(res.applied).every((n) => n === 0)).toBe(true)
    expect(await snapshotDb()).toBe(before)
  })

  it('asks a PDS that hosts many of the repos once (listRepos), at the PDS recorded, without resolving DIDs', async () => {
    const calls: string[] = []
    const counting: typeof fetch = (input, init) => {
      calls.push(new URL(String(input)).pathname.split('/').pop()!)
      return fetch(input, init)
    }
    const reader = new RepoReader({ collection: MOOD_NSID, idResolver: createIdResolver(network.plcUrl), fetch: counting })
    const sync = new RepoSync({ store, reader })
    const states = await sync.states([carol.did, dave.did, 'did:plc:cccccccccccccccccccccccc'])
    expect([...states.keys()].sort()).toEqual([carol.did, dave.did].sort())
    expect(states.get(carol.did)!.pds).toBeDefined()
    const revs = new RevChecker(reader, { minRepos: 2 })
    revs.prime(states.values())
    expect(await revs.revOf(states.get(carol.did)!)).toBe(states.get(carol.did)!.rev)
    expect(await revs.revOf(states.get(dave.did)!)).toBe(states.get(dave.did)!.rev)
    // A repo the PDS does not list (moved away, or gone) must be read to know.
    expect(await revs.revOf({ ...states.get(dave.did)!, _id: 'did:plc:cccccccccccccccccccccccc' })).toBeUndefined()
    expect(calls).toEqual(['com.atproto.sync.listRepos'])
  })

  it('catches up with what happened while nothing listened: deletes, edits, new moods', async () => {
    const rkeys = (await moods().find({ 'atproto.did': carol.did }).sort({ 'atproto.rkey': 1 }).toArray()).map((d) => d.atproto!.rkey!)
    const gone = rkeys.slice(0, 3)
    for (const rkey of gone) await carol.agent.com.atproto.repo.deleteRecord({ repo: carol.did, collection: MOOD_NSID, rkey })
    await carol.agent.com.atproto.repo.putRecord({ repo: carol.did, collection: MOOD_NSID, rkey: rkeys[5]!, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'changed my mind', when: new Date().toISOString() } })
    await post(carol, 2)

    const res = await runJson('backfill', '--user', 'auth0|carol')
    expect(res.repos.synced).toBe(1)
    expect(res.applied).toMatchObject({ deleted: gone.length, updated: 1, inserted: 2, unchanged: 25 - gone.length - 1 })
    for (const rkey of gone) expect((await moods().findOne({ 'atproto.did': carol.did, 'atproto.rkey': rkey }))?.deleted).toBe(true)
    expect(await compareWithRepos(t.db, [carol])).toEqual({ missing: [], extra: [], stale: [], duplicates: [] })
  })

  it('quarantines an invalid record and applies the rest; a forced re-read changes nothing', async () => {
    const [bad] = await post(dave, 1, { mood: { not: 'text' } })
    const res = await runJson('backfill', '--did', dave.did)
    expect(res).toMatchObject({ quarantined: 1, records: 11 })
    const entries = await t.db.collection(COLLECTIONS.quarantine).find({ did: dave.did, rkey: bad }).toArray()
    expect(entries).toHaveLength(1)
    expect(entries[0]!.reason).toMatch(/mood/)
    const before = await snapshotDb()
    const again = await runJson('backfill', '--did', dave.did, '--force')
    expect(again.repos.synced).toBe(1)
    expect(again.applied).toMatchObject({ inserted: 0, updated: 0, deleted: 0, unchanged: 10 })
    expect(await snapshotDb()).toBe(before)
    expect(await t.db.collection(COLLECTIONS.quarantine).countDocuments({ did: dave.did })).toBe(1)
  })

  it('an interrupted run resumes: repos done are skipped, the rest are read', async () => {
    const accounts = [await network.createAccount('fern'), await network.createAccount('finn'), await network.createAccount('flora')]
    for (const a of accounts) await post(a, 4)
    const dids = accounts.map((a) => a.did)
    const controller = new AbortController()
    const reader = new RepoReader({ collection: MOOD_NSID, idResolver: createIdResolver(network.plcUrl) })
    // SIGINT arrives while the first repo is being read.
    class Interrupted extends RepoSync {
      override async prepare(...args: Parameters<RepoSync['prepare']>) {
        const prepared = await super.prepare(...args)
        controller.abort()
        return prepared
      }
    }
    const first = await backfill(new Interrupted({ store, reader }), dids, { concurrency: 1, signal: controller.signal })
    expect(first).toMatchObject({ interrupted: true, repos: { synced: 1, unchanged: 0, failed: 0 } })
    const sync = new RepoSync({ store, reader })
    const second = await backfill(sync, dids, { concurrency: 2 })
    expect(second).toMatchObject({ interrupted: false, repos: { synced: 2, unchanged: 1, failed: 0 }, records: 12 })
    expect(await moods().countDocuments({ 'atproto.did': { $in: dids } })).toBe(12)
  })

  it('a deactivated account\'s moods are hidden, and come back when it is active again', async () => {
    await dave.agent.com.atproto.server.deactivateAccount({})
    const hidden = await runJson('backfill', '--did', dave.did)
    expect(hidden.repos).toMatchObject({ hidden: 1, failed: 0 })
    expect(await moods().countDocuments({ 'atproto.did': dave.did, deleted: { $ne: true } })).toBe(0)
    expect(await moods().countDocuments({ 'atproto.did': dave.did, 'atproto.hidden': 'deactivated' })).toBe(10)
    await dave.agent.com.atproto.server.activateAccount()
    const back = await runJson('backfill', '--did', dave.did)
    expect(back.repos).toMatchObject({ synced: 1, failed: 0 })
    expect(await moods().countDocuments({ 'atproto.did': dave.did, deleted: { $ne: true } })).toBe(10)
  })

  it('drains the repos the indexer queued (gaps, #sync)', async () => {
    await store.backfill.add([carol.did, dave.did], 'test gap')
    const res = await runJson('backfill', '--queued')
    expect(res.repos.synced + res.repos.unchanged).toBe(2)
    expect(await t.db.collection(COLLECTIONS.backfill).countDocuments()).toBe(0)
  })

  it('moodsync ingest reads queued repos in the background; a failing one waits and says why', async () => {
    const gina = await network.createAccount('gina')
    await post(gina, 3)
    const unresolvable = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
    await store.backfill.add([gina.did, unresolvable], 'gap in the stream')
    const service = await startIngest(t, { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl, MOODSYNC_AUTO_BACKFILL: 'on' })
    try {
      await waitFor(async () => (await moods().countDocuments({ 'atproto.did': gina.did })) === 3, { what: 'the queued repo to be read' })
      const left = await waitFor(async () => {
        const docs = await t.db.collection<BackfillDoc>(COLLECTIONS.backfill).find().toArray()
        return docs.length === 1 && docs[0]!.attempts === 1 ? docs : undefined
      }, { what: 'the failed repo to be marked for a later retry' })
      expect(left[0]).toMatchObject({ _id: unresolvable, attempts: 1, error: expect.stringMatching(/^unresolvable: /) })
      expect(left[0]!.nextAttemptAt!.getTime()).toBeGreaterThan(Date.now())
      const metrics = await waitFor(async () => {
        const text = await (await fetch(`${service.ops.url}/metrics`)).text()
        return /^moodsync_backfill_repos_total\{outcome="failed"\} 1$/m.test(text) ? text : undefined
      }, { what: 'the backfill metrics' })
      expect(metrics).toMatch(/^moodsync_backfill_repos_total\{outcome="synced"\} 1$/m)
    } finally {
      await service.destroy()
      await t.db.collection(COLLECTIONS.backfill).deleteMany({})
    }
  })

  it('every failed repo of a round waits with backoff, past the report\'s first 20 too (regression)', async () => {
    // 25 repos that cannot be read: the report keeps 20 in full; the retry schedule needs all.
    const dids = Array.from({ length: 25 }, (_, i) => `did:plc:${'c'.repeat(22)}${String.fromCharCode(97 + Math.floor(i / 26))}${String.fromCharCode(97 + (i % 26))}`)
    await store.backfill.add(dids, 'gap in the stream')
    try {
      const worker = new BackfillWorker({ queue: store.backfill, sync: newSync().sync, batch: 100 })
      expect(await worker.step()).toBe(true)
      const queued = await t.db.collection<BackfillDoc>(COLLECTIONS.backfill).find({ _id: { $in: dids } }).toArray()
      expect(queued).toHaveLength(25)
      for (const doc of queued) {
        expect(doc).toMatchObject({ attempts: 1, error: expect.stringMatching(/^unresolvable: /) })
        expect(doc.nextAttemptAt!.getTime()).toBeGreaterThan(Date.now())
      }
      // Nothing is due again before its time: the next round has nothing to do.
      expect(await worker.step()).toBe(false)
    } finally {
      await t.db.collection(COLLECTIONS.backfill).deleteMany({})
    }
  })

  it('refuses a repo that fails verification, and lists records only where the CAR cannot be had', async () => {
    // A host that answers carol's getRepo with dave's repo: the commit is not signed for carol.
    const swapped: typeof fetch = (input, init) => fetch(String(input).replace(`getRepo?did=${encodeURIComponent(carol.did)}`, `getRepo?did=${encodeURIComponent(dave.did)}`), init)
    await expect(newSync({ fetch: swapped }).reader.read(carol.did)).rejects.toSatisfy((err) => err instanceof RepoUnavailableError && err.kind === 'verification')

    const fromCar = await newSync().reader.read(carol.did)
    expect(fromCar.via).toBe('car')
    // A host that changes one record's text: the block no longer matches its CID.
    const text = new TextEncoder().encode((fromCar.records[0]!.value as { mood: string }).mood)
    const tampering: typeof fetch = async (input, init) => {
      const res = await fetch(input, init)
      if (!String(input).includes('sync.getRepo')) return res
      const bytes = new Uint8Array(await res.arrayBuffer())
      const at = Buffer.from(bytes).indexOf(Buffer.from(text))
      expect(at).toBeGreaterThan(0)
      bytes[at] = bytes[at]! ^ 0x20
      return new Response(bytes, { status: 200, headers: { 'content-type': 'application/vnd.ipld.car' } })
    }
    await expect(newSync({ fetch: tampering }).reader.read(carol.did)).rejects.toSatisfy((err) => err instanceof RepoUnavailableError && err.kind === 'verification' && /does not match its CID/.test(err.message))
    const noCar: typeof fetch = (input, init) =>
      String(input).includes('sync.getRepo') ? Promise.resolve(new Response(JSON.stringify({ error: 'MethodNotImplemented' }), { status: 501 })) : fetch(input, init)
    for (const reader of [newSync({ fetch: noCar }).reader, newSync({ maxCarBytes: 100 }).reader]) {
      const listed = await reader.read(carol.did)
      expect(listed.via).toBe('listRecords')
      expect(listed.rev).toBe(fromCar.rev)
      expect(listed.records.map((r) => [r.rkey, r.cid])).toEqual(fromCar.records.map((r) => [r.rkey, r.cid]))
    }

    // A DID nobody can resolve is a failure of that repo, counted by kind; the run goes on.
    const res = await runJson('backfill', '--did', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', '--did', carol.did)
    expect(res.code).toBe(3)
    expect(res.failures).toEqual({ unresolvable: 1 })
    expect(res.repos.failed).toBe(1)
  })

  it('bad usage gets a clear error', async () => {
    expect((await run('backfill')).err).toMatch(/choose exactly one of/)
    expect((await run('backfill')).code).toBe(2)
    const bad = await run('backfill', '--did', 'carol')
    expect(bad.code).toBe(2)
    expect(bad.err).toMatch(/not a DID/)
  })
})
