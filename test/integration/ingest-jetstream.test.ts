import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc, type QuarantineDoc } from '../../src/store/collections.ts'
import { JetstreamSource } from '../../src/ingest/jetstream.ts'
import type { IngestService } from '../../src/app/service.ts'
import type { IngestEvent } from '../../src/ingest/events.ts'
import { Backoff } from '../../src/retry.ts'
import { startIngest } from '../../rig/ingest.ts'
import { JetstreamDaemon } from '../../rig/jetstream.ts'
import { JetstreamServer } from '../../rig/jetstream-server.ts'
import { snapshot as snapshotOf, useTestDb } from '../../rig/mongo.ts'
import { clientRef, createMood, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { TcpProxy } from '../../rig/tcp-proxy.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

const t = useTestDb('ingest_jetstream')
/** Short, so a frozen line is noticed quickly here. */
const IDLE_MS = 1_500
const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
const byRkey = (did: string, rkey: string) => moods().findOne({ 'atproto.did': did, 'atproto.rkey': rkey })
const snapshot = () => snapshotOf(t.db, [COLLECTIONS.moods, COLLECTIONS.quarantine])

// Classic Jetstream (v1) on the PDS's firehose, reached through a TCP proxy that can cut the line.
describe('ingest from Jetstream (classic, the real server)', () => {
  let network: TestNetwork
  let jetstream: JetstreamDaemon
  let proxy: TcpProxy
  let url: string
  let alice: TestAccount
  let service: IngestService
  let firstCursor: number | undefined
  const kinds: string[] = []
  const fastSource = () => new JetstreamSource({ url, backoff: new Backoff({ baseMs: 20, maxMs: 200 }), idleTimeoutMs: IDLE_MS })
  const onApplied = (batch: readonly IngestEvent[], cursor: number | undefined) => {
    firstCursor ??= cursor
    kinds.push(...batch.map((e) => e.kind))
  }
  // Health limits short enough that a frozen line shows on /healthz within this test.
  const start = () => startIngest(t, { MOODSYNC_MAX_LAG_SECONDS: '2', MOODSYNC_MAX_DISCONNECTED_SECONDS: '2' }, { source: fastSource(), onApplied })
  const healthz = async () => {
    const res = await fetch(`${service.ops.url}/healthz`)
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  const post = (mood: string) => createMood(alice, mood)

  beforeAll(async () => {
    network = await TestNetwork.start()
    jetstream = await JetstreamDaemon.v1({ firehoseUrl: network.firehoseUrl })
    const target = new URL(jetstream.url)
    proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port) })
    url = `ws://127.0.0.1:${proxy.port}/subscribe`
    alice = await network.createAccount('alice')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } })
    service = await start()
    await waitFor(() => service.source.stats.connected, { what: 'the Jetstream connection' })
  })
  afterAll(async () => {
    await service?.destroy()
    await proxy?.stop()
    await jetstream?.stop()
    await network?.stop()
  })

  it('is sent our collection only (the server filters by wantedCollections)', async () => {
    expect([service.source.id, service.source.instance]).toEqual(['jetstream', url])
    await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: 'com.example.other', validate: false, record: { $type: 'com.example.other', text: 'not ours' } })
    const mood = await post('after a foreign record')
    await waitFor(() => byRkey(alice.did, mood.rkey).then((d) => d ?? undefined), { what: 'the mood' })
    // A commit of another collection would have reached us as a `skip`.
    expect(kinds).toContain('commit')
    expect(kinds).not.toContain('skip')
  })

  it('moods created, updated and deleted with @atproto/api follow in MongoDB', async () => {
    const created = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'via jetstream', when: '2025-02-03T04:05:06.000Z' } })
    const rkey = created.data.uri.split('/').pop()!
    const doc = await waitFor(() => byRkey(alice.did, rkey).then((d) => d ?? undefined), { what: 'the mood' })
    expect(doc).toMatchObject({ user: 'auth0|alice', mood: 'via jetstream', when: new Date('2025-02-03T04:05:06.000Z'), atproto: { cid: created.data.cid } })

    const put = await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'edited via jetstream', when: '2025-02-03T04:05:06.000Z' } })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.atproto?.cid === put.data.cid, { what: 'the update' })
    await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.deleted === true, { what: 'the delete' })
    expect(await byRkey(alice.did, rkey)).toMatchObject({ mood: 'edited via jetstream', atproto: { cid: put.data.cid } })
  })

  it('an invalid record is quarantined with its reason; the stream goes on', async () => {
    const bad = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, validate: false, record: { $type: MOOD_NSID, ref: clientRef(), mood: ['not', 'text'], when: 'now' } })
    const badRkey = bad.data.uri.split('/').pop()!
    const after = await post('after the invalid one')
    await waitFor(() => byRkey(alice.did, after.rkey).then((d) => d ?? undefined), { what: 'the valid mood after the invalid one' })
    const entry = await t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine).findOne({ did: alice.did, rkey: badRkey })
    expect(entry).toMatchObject({ source: service.source.id, cid: bad.data.cid, reason: expect.stringMatching(/mood/) })
    expect(await byRkey(alice.did, badRkey)).toBeNull()
  })

  it('reconnects after the line drops and resumes from its cursor, missing nothing written meanwhile', async () => {
    const reconnects = service.source.stats.reconnects
    await proxy.down()
    await waitFor(() => !service.source.stats.connected, { what: 'the disconnect' })
    const during = await post('written while disconnected')
    await proxy.up()
    await waitFor(() => service.source.stats.connected && service.source.stats.reconnects > reconnects, { what: 'the reconnect' })
    // Only a resume from the saved position replays it: a fresh connection starts at the live tail.
    await waitFor(() => byRkey(alice.did, during.rkey).then((d) => d ?? undefined), { what: 'the mood written during the drop' })
    expect(await valueOf(service.indexer.metrics.reconnects)).toBeGreaterThanOrEqual(1)
  })

  it('a frozen line (TCP open, nothing moving) is noticed within the idle timeout; it reconnects by itself and the waiting mood arrives', async () => {
    // This source's idle timeout is IDLE_MS; production's default is 30 s (MOODSYNC_IDLE_TIMEOUT_SECONDS).
    const reconnects = service.source.stats.reconnects
    // An event after the last reconnection proves the stream live: heartbeats then keep lag low.
    const before = await post('before the freeze')
    await waitFor(() => byRkey(alice.did, before.rkey).then((d) => d ?? undefined), { what: 'the mood before the freeze' })
    await waitFor(async () => ((await healthz()).status === 200 ? true : undefined), { what: '/healthz to be 200 before the freeze' })
    proxy.freeze()
    const frozenAt = performance.now()
    const waiting = await post('waiting behind a frozen line')
    // Lag grows while nothing is heard, though no event was applied: /healthz says so meanwhile.
    const unhealthy = await waitFor(async () => {
      const h = await healthz()
      return h.status === 503 ? h.body : undefined
    }, { what: '/healthz to flip while the line is frozen', timeoutMs: 10_000 })
    const flippedMs = performance.now() - frozenAt
    expect(unhealthy.problems).toEqual(expect.arrayContaining([expect.stringMatching(/^lag \d+ s$|^source disconnected for/)]))
    await waitFor(() => !service.source.stats.connected || service.source.stats.reconnects > reconnects, { what: 'the silent line to be dropped', timeoutMs: IDLE_MS * 4 })
    const detectedMs = performance.now() - frozenAt
    expect(service.source.stats.lastDropReason).toBe(`no frame or pong for ${IDLE_MS / 1000} s`)
    expect((await (await fetch(`${service.ops.url}/healthz`)).json()) as Record<string, unknown>).toMatchObject({ lastDropReason: expect.stringMatching(/no frame or pong/) })
    await waitFor(() => service.source.stats.connected && service.source.stats.reconnects > reconnects, { what: 'the reconnect' })
    await waitFor(() => byRkey(alice.did, waiting.rkey).then((d) => d ?? undefined), { what: 'the mood written while the line was frozen' })
    expect(detectedMs).toBeLessThan(IDLE_MS * 2)
    // A new event after the reconnection proves the stream live again, and health recovers.
    await post('after the thaw')
    await waitFor(async () => ((await healthz()).status === 200 ? true : undefined), { what: '/healthz to recover', timeoutMs: 10_000 })
    console.log(`frozen line: /healthz 503 after ${Math.round(flippedMs)} ms, dropped ${Math.round(detectedMs)} ms after it froze (idle timeout ${IDLE_MS} ms, MOODSYNC_MAX_LAG_SECONDS 2)`)
  })

  it("a platform user's new handle is kept (moodsync_identities); a stranger's is not", async () => {
    const stranger = await network.createAccount('stranger')
    const handle = `alice-${Date.now().toString(36)}.test`
    await stranger.agent.com.atproto.identity.updateHandle({ handle: `stranger-${Date.now().toString(36)}.test` })
    await alice.agent.com.atproto.identity.updateHandle({ handle })
    const kept = await waitFor(() => t.db.collection(COLLECTIONS.identities).findOne({ _id: alice.did as never }).then((d) => (d?.handle === handle ? d : undefined)), { what: "alice's new handle" })
    expect(kept).toMatchObject({ handle, from: 'event' })
    expect(await t.db.collection(COLLECTIONS.identities).findOne({ _id: stranger.did as never })).toBeNull()
  })

  it('deactivation and reactivation follow through Jetstream account events', async () => {
    const { rkey } = await post('hide me')
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
    const before = await snapshot()
    const from = firstCursor!
    expect(from).toBeLessThan(saved)
    for (let round = 0; round < 2; round++) {
      await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: 'jetstream' as never }, { $set: { cursor: from } })
      service = await start()
      await waitFor(() => (service.indexer.state.appliedCursor ?? 0) >= saved, { what: `replay round ${round + 1}` })
      await service.destroy()
      expect(await snapshot()).toBe(before)
      expect(await valueOf(service.indexer.metrics.applied, { result: 'inserted' })).toBe(0)
    }
    expect(await t.db.collection(COLLECTIONS.gaps).countDocuments()).toBe(0)
    service = await start()
    const resumed = await post('after the replays')
    await waitFor(() => byRkey(alice.did, resumed.rkey).then((d) => d ?? undefined), { what: 'the mood after resuming' })
    expect(await moods().countDocuments({ 'atproto.did': alice.did })).toBe(JSON.parse(before)[0].length + 1)
  })
})

// Faults the real server cannot be made to produce, on the hand-written stand-in (rig/jetstream-server.ts).
describe('ingest from Jetstream: hostile frames and a silently clamped cursor (stand-in)', () => {
  let service: IngestService | undefined
  afterAll(async () => {
    await service?.destroy()
  })

  it('malformed frames and unknown kinds are quarantined; the stream goes on', async () => {
    const server = await JetstreamServer.start()
    try {
      const source = new JetstreamSource({ url: server.url })
      service = await startIngest(t, {}, { source })
      await waitFor(() => server.connections === 1, { what: 'the connection' })
      const did = 'did:plc:hostileframes0000000000'
      server.sendRaw('{"did": "did:plc:broken", "time_us": ')
      server.sendRaw(JSON.stringify({ did, time_us: Date.now() * 1000, kind: 'labels', labels: {} }))
      server.publish({ did, kind: 'commit', commit: { rev: '3zzzzzzzzzz22', operation: 'create', collection: MOOD_NSID, rkey: '3lbadbadbad22', cid: 'bafyreibad', record: { $type: MOOD_NSID, ref: clientRef(), mood: ['not', 'text'], when: 'now' } } })
      server.publish({ did, kind: 'commit', commit: { rev: '3zzzzzzzzzz33', operation: 'create', collection: MOOD_NSID, rkey: '3lgoodgood222', cid: 'bafyreigood', record: { $type: MOOD_NSID, ref: clientRef(), mood: 'after the noise', when: new Date().toISOString() } } })
      await waitFor(() => byRkey(did, '3lgoodgood222').then((d) => d ?? undefined), { what: 'the valid mood after bad frames' })
      // A batch's quarantine entries are written after its records: wait for all three.
      const wanted = [/malformed JSON/, /unknown event kind "labels"/, /mood/]
      const q = await waitFor(async () => {
        const entries = await t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine).find({ source: source.id }).toArray()
        return wanted.every((re) => entries.some((e) => re.test(e.reason))) && entries.some((e) => e.rkey === '3lbadbadbad22') ? entries : undefined
      }, { what: 'the three quarantine entries' })
      expect(q.map((e) => e.reason)).toEqual(expect.arrayContaining([expect.stringMatching(/malformed JSON/), expect.stringMatching(/unknown event kind "labels"/), expect.stringMatching(/mood/)]))
      expect(q.find((e) => e.rkey === '3lbadbadbad22')).toMatchObject({ did, cid: 'bafyreibad' })
      expect(q.find((e) => /malformed/.test(e.reason))?.raw).toBe('{"did": "did:plc:broken", "time_us": ')
    } finally {
      await service?.destroy()
      service = undefined
      await server.stop()
    }
  })

  it('a cursor older than the replay window is detected as a gap and the repos are queued for backfill', async () => {
    const windowed = await JetstreamServer.start({ windowUs: 60_000_000 })
    const did = 'did:plc:windowgap000000000000000'
    await moods().insertOne({ user: null, mood: 'known', when: new Date(), atproto: { did, rkey: '3lknownknown2', cid: 'bafyknown', rev: '3lknownknown2' } } as never)
    try {
      const source = new JetstreamSource({ url: windowed.url, windowUs: 60_000_000 })
      const oldCursor = (Date.now() - 3_600_000) * 1000
      await t.db.collection(COLLECTIONS.cursors).replaceOne({ _id: source.id as never }, { cursor: oldCursor, instance: source.instance, updatedAt: new Date() }, { upsert: true })
      service = await startIngest(t, { MOODSYNC_MAX_DISCONNECTED_SECONDS: '0.5' }, { source })
      await waitFor(() => windowed.connections === 1, { what: 'the connection' })
      windowed.publish({ did, kind: 'identity', identity: { did, handle: 'gap.test', seq: 1, time: new Date().toISOString() } })
      await waitFor(() => service!.indexer.state.gaps === 1, { what: 'the gap' })
      const gaps = await t.db.collection(COLLECTIONS.gaps).find({ source: source.id }).toArray()
      expect(gaps).toHaveLength(1)
      expect(gaps[0]).toMatchObject({ requested: oldCursor, reason: expect.stringMatching(/older than the replay window/) })
      const queued = await t.db.collection(COLLECTIONS.backfill).find().toArray()
      expect(queued.map((d) => d._id)).toContain(did)
      const health = await (await fetch(`${service.ops.url}/healthz`)).json()
      expect(health).toMatchObject({ gapsDetected: 1 })
      const metrics = await (await fetch(`${service.ops.url}/metrics`)).text()
      expect(metrics).toMatch(/^moodsync_gaps_total 1$/m)
      // The process and runtime series beside moodsync's own (prom-client's collectors).
      expect(metrics).toMatch(/^process_resident_memory_bytes \d+/m)
      expect(metrics).toMatch(/^nodejs_eventloop_lag_seconds [\d.e-]+$/m)
      expect(metrics).toMatch(/^moodsync_lag_seconds [\d.e-]+$/m)

      // The server goes away: after MOODSYNC_MAX_DISCONNECTED_SECONDS /healthz says so with a 503.
      await windowed.stop()
      const unhealthy = await waitFor(async () => {
        const res = await fetch(`${service!.ops.url}/healthz`)
        return res.status === 503 ? res.json() : undefined
      }, { what: '/healthz to report the disconnection' })
      expect(unhealthy).toMatchObject({ healthy: false, connected: false, problems: expect.arrayContaining([expect.stringMatching(/^source disconnected for/)]) })
    } finally {
      await service?.destroy()
      service = undefined
      await windowed.stop()
    }
  })
})
