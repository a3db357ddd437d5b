import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IngestService } from '../../src/app/service.ts'
import { JetstreamSource } from '../../src/ingest/jetstream.ts'
import { Backoff } from '../../src/retry.ts'
import { COLLECTIONS, type CursorDoc, type MoodDoc } from '../../src/store/collections.ts'
import { startIngest } from '../../rig/ingest.ts'
import { JetstreamDaemon } from '../../rig/jetstream.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { createMood, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { waitFor } from '../../rig/wait.ts'

const t = useTestDb('ingest_position')
/** The replay window, made small: production assumes 24 h. */
const WINDOW_MS = 4_000
/** Pings every third of this: heartbeats come often. */
const IDLE_MS = 900
/** How far behind an answered ping the quiet position moves. */
const MARGIN_MS = 300
const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
const cursorDoc = () => t.db.collection<CursorDoc>(COLLECTIONS.cursors).findOne({ _id: 'jetstream' })
const gaps = () => t.db.collection(COLLECTIONS.gaps).countDocuments()
const queued = () => t.db.collection(COLLECTIONS.backfill).countDocuments()

// The saved position on real classic Jetstream servers: quiet streams, outages, another instance.
describe('the saved position (Jetstream, the real server)', () => {
  let network: TestNetwork
  let first: JetstreamDaemon
  let second: JetstreamDaemon
  let alice: TestAccount
  let service: IngestService | undefined
  const source = (url: string) => new JetstreamSource({ url, windowUs: WINDOW_MS * 1000, idleTimeoutMs: IDLE_MS, watermarkMarginMs: MARGIN_MS, failoverRewindUs: 1_000_000, backoff: new Backoff({ baseMs: 20, maxMs: 200 }) })
  const start = async (url: string) => {
    service = await startIngest(t, { MOODSYNC_MAX_LAG_SECONDS: '2' }, { source: source(url) })
    await waitFor(() => service!.source.stats.connected, { what: 'the Jetstream connection' })
    return service
  }
  const stop = async () => {
    await service?.destroy()
    service = undefined
  }
  const arrived = (rkey: string) => waitFor(() => moods().findOne({ 'atproto.did': alice.did, 'atproto.rkey': rkey }).then((d) => d ?? undefined), { what: `mood ${rkey}` })
  const health = async () => (await (await fetch(`${service!.ops.url}/healthz`)).json()) as { healthy: boolean; lagSeconds: number; problems: string[] }

  beforeAll(async () => {
    network = await TestNetwork.start()
    first = await JetstreamDaemon.v1({ firehoseUrl: network.firehoseUrl })
    second = await JetstreamDaemon.v1({ firehoseUrl: network.firehoseUrl })
    alice = await network.createAccount('alice')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
  })
  afterAll(async () => {
    await stop()
    await second?.stop()
    await first?.stop()
    await network?.stop()
  })

  it('a quiet period longer than the window, then a restart: no gap, no backfill, lag stays low meanwhile', async () => {
    await start(first.url)
    const only = await createMood(alice, 'the only mood for a while')
    await arrived(only.rkey)
    // Saved within a second of its apply, though nothing follows it.
    const lastEventUs = (await waitFor(() => cursorDoc().then((d) => d ?? undefined), { what: 'the position to be saved', timeoutMs: 2_000 })).cursor
    // Quiet for longer than the window: the position moves on heartbeats alone.
    const quietUntil = lastEventUs / 1000 + WINDOW_MS * 1.5
    await waitFor(async () => Date.now() > quietUntil && ((await cursorDoc())?.cursor ?? 0) > quietUntil * 1000 - WINDOW_MS * 500, { what: 'the saved position to follow the quiet stream', timeoutMs: WINDOW_MS * 4 })
    const quiet = await health()
    expect(quiet).toMatchObject({ healthy: true })
    expect(quiet.lagSeconds).toBeLessThan(2)
    await stop()

    await start(first.url)
    const next = await createMood(alice, 'after the restart')
    await arrived(next.rkey)
    expect(service!.indexer.state.gaps).toBe(0)
    expect(await gaps()).toBe(0)
    expect(await queued()).toBe(0)
    await stop()
  })

  it('a real outage longer than the window is a gap: the repos are queued for backfill', async () => {
    const stoppedAt = (await cursorDoc())!.cursor / 1000
    const during = await createMood(alice, 'written while moodsync was down')
    await waitFor(() => Date.now() > stoppedAt + WINDOW_MS * 1.5, { what: 'an outage longer than the window', timeoutMs: WINDOW_MS * 3 })
    await start(first.url)
    await arrived(during.rkey)
    await waitFor(() => service!.indexer.state.gaps === 1, { what: 'the gap' })
    expect(await t.db.collection(COLLECTIONS.gaps).findOne()).toMatchObject({ source: 'jetstream', reason: expect.stringMatching(/older than the replay window/) })
    expect((await t.db.collection(COLLECTIONS.backfill).find().toArray()).map((d) => d._id)).toContain(alice.did)
    await t.db.collection(COLLECTIONS.gaps).deleteMany({})
    await t.db.collection(COLLECTIONS.backfill).deleteMany({})
    // A resumed connection proves itself live with the first event emitted after it opened
    // (on the network, account and identity events come every second); quiet, its heartbeats
    // then move the position again.
    const live = await createMood(alice, 'proves the resumed stream live')
    await arrived(live.rkey)
    const liveUs = (await waitFor(async () => ((await cursorDoc())?.timeUs ?? 0) > 0 && (await cursorDoc()), { what: 'its position' }))!.cursor
    await waitFor(async () => ((await cursorDoc())?.cursor ?? 0) > liveUs + MARGIN_MS * 1000, { what: 'a heartbeat to move the position past it' })
    await stop()
  })

  it('another Jetstream instance resumes from the saved time (rewound), not from its live tail', async () => {
    const saved = (await cursorDoc())!
    expect(saved.instance).toBe(first.url)
    // Written while moodsync is stopped: only a resume by time can find it on the other instance.
    const missed = await createMood(alice, 'written between instances')
    await start(second.url)
    await arrived(missed.rkey)
    await waitFor(async () => (await cursorDoc())?.instance === second.url, { what: 'the position to name the new instance' })
    expect(service!.indexer.state.gaps).toBe(0)
    expect(await gaps()).toBe(0)
    await stop()
  })
})
