import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IngestService } from '../../src/app/service.ts'
import type { IngestEvent } from '../../src/ingest/events.ts'
import { SEQ_CURSOR_LIMIT } from '../../src/ingest/jetstream.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { startIngest } from '../../rig/ingest.ts'
import { JetstreamDaemon } from '../../rig/jetstream.ts'
import { snapshot as snapshotOf, useTestDb } from '../../rig/mongo.ts'
import { createMood, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { RelayServer } from '../../rig/relay.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

const t = useTestDb('ingest_jetstream_v2')
const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
const snapshot = () => snapshotOf(t.db, [COLLECTIONS.moods, COLLECTIONS.quarantine])

// Jetstream v2 (the current server) on Bluesky's relay: its events carry its own sequence as
// `cursor`, and a resume replays from the start of a stored block, re-sending events before
// the cursor asked for. moodsync must stay exact.
describe('ingest from Jetstream v2 (the real server, on the relay)', () => {
  let network: TestNetwork
  let relay: RelayServer
  let jetstream: JetstreamDaemon
  let alice: TestAccount
  let service: IngestService
  let seen: number[] = []
  const start = () => startIngest(t, { MOODSYNC_SOURCE: 'jetstream', JETSTREAM_URL: jetstream.url }, { onApplied: (batch: readonly IngestEvent[]) => void seen.push(...batch.flatMap((e) => (e.kind === 'commit' ? [e.cursor] : []))) })
  const post = (mood: string) => createMood(alice, mood)
  const arrived = (rkey: string) => waitFor(() => moods().findOne({ 'atproto.did': alice.did, 'atproto.rkey': rkey }).then((d) => d ?? undefined), { what: `mood ${rkey}`, timeoutMs: 30_000 })

  beforeAll(async () => {
    network = await TestNetwork.start()
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    jetstream = await JetstreamDaemon.v2({ relayUrl: relay.url, plcUrl: network.plcUrl })
    alice = await network.createAccount('alice')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
    service = await start()
    await waitFor(() => service.source.stats.connected, { what: 'the Jetstream v2 connection' })
  })
  afterAll(async () => {
    await service?.destroy()
    await jetstream?.stop()
    await relay?.stop()
    await network?.stop()
  })

  it('moods arrive, and the cursor kept is its own sequence, not time_us', async () => {
    const written = []
    for (let i = 0; i < 6; i++) written.push(await post(`v2 mood ${i}`))
    for (const m of written) expect(await arrived(m.rkey)).toMatchObject({ user: 'auth0|alice', atproto: { cid: m.cid } })
    const cursor = service.indexer.state.appliedCursor!
    expect(cursor).toBeGreaterThan(0)
    expect(cursor).toBeLessThan(SEQ_CURSOR_LIMIT)
    expect(new Set(seen).size).toBe(seen.length)
  })

  it('a resume from the middle (after a Jetstream restart) re-sends what was applied; MongoDB ends exactly as before, plus the new mood', async () => {
    const middle = seen[Math.floor(seen.length / 2)]!
    await service.destroy()
    const before = await snapshot()
    await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: 'jetstream' as never }, { $set: { cursor: middle } })
    seen = []
    service = await start()
    await waitFor(() => service.source.stats.connected, { what: 'the reconnect' })
    const after = await post('after the resume')
    await arrived(after.rkey)
    // It re-sent events the cursor had already covered (the one at the cursor, and when its
    // store resumes at a block boundary, earlier ones): a naive consumer counts them twice.
    expect(Math.min(...seen)).toBeLessThanOrEqual(middle)
    expect(seen.filter((c) => c <= middle).length).toBeGreaterThanOrEqual(1)
    const docs = (JSON.parse(await snapshot()) as [MoodDoc[], unknown[]])
    expect(JSON.stringify([docs[0].filter((d) => d.atproto?.rkey !== after.rkey), docs[1]])).toBe(before)
    expect(await valueOf(service.indexer.metrics.applied, { result: 'inserted' })).toBe(1)
    expect(await t.db.collection(COLLECTIONS.gaps).countDocuments()).toBe(0)
  })
})
