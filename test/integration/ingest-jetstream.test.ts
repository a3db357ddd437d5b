import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc, type QuarantineDoc } from '../../src/store/collections.ts'
import { JetstreamSource } from '../../src/ingest/jetstream.ts'
import type { IngestService } from '../../src/app/service.ts'
import { Backoff } from '../../src/retry.ts'
import { startIngest } from '../../rig/ingest.ts'
import { JetstreamServer } from '../../rig/jetstream-server.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { TestNetwork, type TestAccount } from '../../rig/network.ts'
import { waitFor } from '../../rig/wait.ts'

const t = useTestDb('ingest_jetstream')

describe('ingest from Jetstream (v1 /subscribe)', () => {
  let network: TestNetwork
  let jetstream: JetstreamServer
  let alice: TestAccount
  let service: IngestService
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
  const byRkey = (did: string, rkey: string) => moods().findOne({ 'atproto.did': did, 'atproto.rkey': rkey })
  const fastSource = () => new JetstreamSource({ url: jetstream.url, backoff: new Backoff({ baseMs: 20, maxMs: 200 }) })

  beforeAll(async () => {
    network = await TestNetwork.start()
    jetstream = await JetstreamServer.start({ firehoseUrl: network.firehoseUrl, plcUrl: network.plcUrl })
    alice = await network.createAccount('alice')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } })
    service = await startIngest(t, { JETSTREAM_URL: jetstream.url }, { source: fastSource() })
    await waitFor(() => jetstream.connections === 1, { what: 'the Jetstream connection' })
  })
  afterAll(async () => {
    await service?.destroy()
    await jetstream?.stop()
    await network?.stop()
  })

  it('subscribes to our collection only', () => {
    expect(jetstream.lastCursorParam).toBeNull()
    expect(service.source.id).toBe(`jetstream:${jetstream.url}`)
  })

  it('moods created, updated and deleted with @atproto/api follow in MongoDB', async () => {
    const created = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood: 'via jetstream', when: '2025-02-03T04:05:06.000Z' } })
    const rkey = created.data.uri.split('/').pop()!
    const doc = await waitFor(() => byRkey(alice.did, rkey).then((d) => d ?? undefined), { what: 'the mood' })
    expect(doc).toMatchObject({ user: 'auth0|alice', mood: 'via jetstream', when: new Date('2025-02-03T04:05:06.000Z'), atproto: { cid: created.data.cid } })

    const put = await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey, record: { $type: MOOD_NSID, mood: 'edited via jetstream', when: '2025-02-03T04:05:06.000Z' } })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.atproto?.cid === put.data.cid, { what: 'the update' })
    await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.deleted === true, { what: 'the delete' })
    expect(await byRkey(alice.did, rkey)).toMatchObject({ mood: 'edited via jetstream', atproto: { cid: put.data.cid } })
  })

  it('malformed frames and unknown kinds are quarantined; the stream goes on', async () => {
    jetstream.sendRaw('{"did": "did:plc:broken", "time_us": ')
    jetstream.sendRaw(JSON.stringify({ did: alice.did, time_us: Date.now() * 1000, kind: 'labels', labels: {} }))
    jetstream.publish({ did: alice.did, kind: 'commit', commit: { rev: '3zzzzzzzzzz22', operation: 'create', collection: MOOD_NSID, rkey: '3lbadbadbad22', cid: 'bafyreibad', record: { $type: MOOD_NSID, mood: ['not', 'text'], when: 'now' } } })
    const after = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood: 'after the noise', when: new Date().toISOString() } })
    await waitFor(() => byRkey(alice.did, after.data.uri.split('/').pop()!).then((d) => d ?? undefined), { what: 'the valid mood after bad frames' })
    const q = await t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine).find({ source: service.source.id }).toArray()
    expect(q.map((e) => e.reason)).toEqual(expect.arrayContaining([expect.stringMatching(/malformed JSON/), expect.stringMatching(/unknown event kind "labels"/), expect.stringMatching(/mood/)]))
    expect(q.find((e) => e.rkey === '3lbadbadbad22')).toMatchObject({ did: alice.did, cid: 'bafyreibad' })
    expect(q.find((e) => /malformed/.test(e.reason))?.raw).toBe('{"did": "did:plc:broken", "time_us": ')
  })

  it('reconnects after a drop and resumes from its cursor, missing nothing', async () => {
    const before = jetstream.connectCount
    const applied = service.indexer.state.appliedCursor!
    jetstream.dropConnections()
    const during = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood: 'written while disconnected', when: new Date().toISOString() } })
    await waitFor(() => jetstream.connectCount > before && jetstream.connections === 1, { what: 'the reconnect' })
    expect(Number(jetstream.lastCursorParam)).toBeGreaterThanOrEqual(applied)
    await waitFor(() => byRkey(alice.did, during.data.uri.split('/').pop()!).then((d) => d ?? undefined), { what: 'the mood written during the drop' })
    expect(service.indexer.metrics.reconnects.get()).toBeGreaterThanOrEqual(1)
  })

  it('deactivation and reactivation follow through Jetstream account events', async () => {
    const res = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood: 'hide me', when: new Date().toISOString() } })
    const rkey = res.data.uri.split('/').pop()!
    await waitFor(() => byRkey(alice.did, rkey).then((d) => d ?? undefined), { what: 'the mood' })
    await alice.agent.com.atproto.server.deactivateAccount({})
    await waitFor(async () => (await byRkey(alice.did, rkey))?.atproto?.hidden === 'deactivated', { what: 'hidden' })
    await alice.agent.com.atproto.server.activateAccount()
    await waitFor(async () => (await byRkey(alice.did, rkey))?.deleted === undefined, { what: 'restored' })
  })

  it('replaying the same stretch twice leaves MongoDB byte-for-byte the same, and the saved cursor resumes', async () => {
    await service.destroy()
    const saved = service.indexer.state.savedCursor!
    expect(saved).toBe(service.indexer.state.appliedCursor)
    const snapshot = async () => JSON.stringify(await Promise.all([COLLECTIONS.moods, COLLECTIONS.quarantine].map((n) => t.db.collection(n).find().sort({ _id: 1 }).toArray())))
    const before = await snapshot()
    const start = jetstream.events[0]!.time_us
    for (let round = 0; round < 2; round++) {
      await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: `jetstream:${jetstream.url}` as never }, { $set: { cursor: start } })
      service = await startIngest(t, {}, { source: fastSource() })
      await waitFor(() => (service.indexer.state.appliedCursor ?? 0) >= saved, { what: `replay round ${round + 1}` })
      expect(jetstream.lastCursorParam).toBe(String(start))
      await service.destroy()
      expect(await snapshot()).toBe(before)
    }
    expect(await t.db.collection(COLLECTIONS.gaps).countDocuments()).toBe(0)
    // A plain restart resumes from the saved cursor (the replays may have saved a later one,
    // when the bridge delivered more events after the first stop).
    const stored = (await t.db.collection(COLLECTIONS.cursors).findOne({ _id: `jetstream:${jetstream.url}` as never }))?.cursor as number
    expect(stored).toBeGreaterThanOrEqual(saved)
    service = await startIngest(t, {}, { source: fastSource() })
    await waitFor(() => jetstream.connections === 1, { what: 'the resumed connection' })
    expect(Number(jetstream.lastCursorParam)).toBe(stored)
  })

  it('a cursor older than the replay window is detected as a gap and the repos are queued for backfill', async () => {
    await service.destroy()
    const windowed = await JetstreamServer.start({ windowUs: 60_000_000 })
    try {
      const source = new JetstreamSource({ url: windowed.url, windowUs: 60_000_000 })
      const oldCursor = (Date.now() - 3_600_000) * 1000
      await t.db.collection(COLLECTIONS.cursors).insertOne({ _id: source.id as never, cursor: oldCursor, updatedAt: new Date() })
      service = await startIngest(t, { MOODSYNC_MAX_DISCONNECTED_SECONDS: '0.5' }, { source })
      await waitFor(() => windowed.connections === 1, { what: 'the connection' })
      windowed.publish({ did: alice.did, kind: 'identity', identity: { did: alice.did, handle: 'alice.test', seq: 1, time: new Date().toISOString() } })
      await waitFor(() => service.indexer.state.gaps === 1, { what: 'the gap' })
      const gaps = await t.db.collection(COLLECTIONS.gaps).find({ source: source.id }).toArray()
      expect(gaps).toHaveLength(1)
      expect(gaps[0]).toMatchObject({ requested: oldCursor, reason: expect.stringMatching(/older than the replay window/) })
      const queued = await t.db.collection(COLLECTIONS.backfill).find().toArray()
      expect(queued.map((d) => d._id)).toContain(alice.did)
      const health = await (await fetch(`${service.ops.url}/healthz`)).json()
      expect(health).toMatchObject({ gapsDetected: 1 })
      expect(await (await fetch(`${service.ops.url}/metrics`)).text()).toMatch(/^moodsync_gaps_total 1$/m)

      // The server goes away: after MOODSYNC_MAX_DISCONNECTED_SECONDS /healthz says so with a 503.
      await windowed.stop()
      const unhealthy = await waitFor(async () => {
        const res = await fetch(`${service.ops.url}/healthz`)
        return res.status === 503 ? res.json() : undefined
      }, { what: '/healthz to report the disconnection' })
      expect(unhealthy).toMatchObject({ healthy: false, connected: false, problems: [expect.stringMatching(/^disconnected for/)] })
    } finally {
      await service.destroy()
      await windowed.stop()
    }
  })
})
