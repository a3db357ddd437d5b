import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IngestService } from '../../src/app/service.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { startIngest } from '../../rig/ingest.ts'
import { snapshot as snapshotOf, useTestDb } from '../../rig/mongo.ts'
import { createMood, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { RelayServer } from '../../rig/relay.ts'
import { TapDaemon } from '../../rig/tap.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

const t = useTestDb('ingest_tap')
const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
const snapshot = () => snapshotOf(t.db, [COLLECTIONS.moods, COLLECTIONS.quarantine])

// `--source tap` against Bluesky's Tap on the rig's relay: Tap's backfill and its live events
// go through the same apply path; what Tap's backfill cannot say (deletes) moodsync's own
// backfill finds; Tap's at-least-once redelivery changes nothing.
describe('ingest from Tap (the real server)', () => {
  let network: TestNetwork
  let relay: RelayServer
  let tap: TapDaemon
  let alice: TestAccount
  let service: IngestService
  const byRkey = (rkey: string) => moods().findOne({ 'atproto.did': alice.did, 'atproto.rkey': rkey })
  const post = (mood: string) => createMood(alice, mood)
  const tapStat = async (path: string) => (await (await fetch(`${tap.url}${path}`, { headers: { authorization: tap.authorization } })).json()) as Record<string, unknown>
  const start = () =>
    startIngest(t, { MOODSYNC_SOURCE: 'tap', TAP_URL: tap.url, TAP_ADMIN_PASSWORD: tap.adminPassword, PLC_URL: network.plcUrl, MOODSYNC_AUTO_BACKFILL: 'on' })

  beforeAll(async () => {
    network = await TestNetwork.start()
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    // Short: an event not acknowledged in time comes again, and must change nothing.
    tap = await TapDaemon.start({ relayUrl: relay.url, plcUrl: network.plcUrl, retryTimeoutSeconds: 2 })
    alice = await network.createAccount('alice')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
  })
  afterAll(async () => {
    await service?.destroy()
    await tap?.stop()
    await relay?.stop()
    await network?.stop()
  })

  it("moods written before Tap tracked the repo arrive through Tap's backfill; moodsync asked Tap to track its users", async () => {
    const before = [await post('before tracking 1'), await post('before tracking 2')]
    service = await start()
    for (const m of before) await waitFor(async () => (await byRkey(m.rkey))?.atproto?.cid === m.cid, { what: 'a backfilled mood', timeoutMs: 30_000 })
    expect(await tapStat(`/info/${alice.did}`)).toMatchObject({ state: 'active' })
    const live = await post('live through tap')
    await waitFor(async () => (await byRkey(live.rkey))?.mood === 'live through tap', { what: 'the live mood' })
    // Every event was acknowledged once durable: Tap holds none back.
    await waitFor(async () => (await tapStat('/stats/outbox-buffer')).outbox_buffer === 0, { what: "Tap's outbox to drain" })
    expect([service.source.id, service.source.instance]).toEqual(['tap', tap.url])
  })

  it("a delete Tap's resync does not send is found by moodsync's own backfill", async () => {
    const doomed = await post('deleted while Tap did not follow')
    await waitFor(() => byRkey(doomed.rkey).then((d) => d ?? undefined), { what: 'the mood' })
    const removed = await fetch(`${tap.url}/repos/remove`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: tap.authorization }, body: JSON.stringify({ dids: [alice.did] }) })
    expect(removed.ok).toBe(true)
    await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey: doomed.rkey })
    const kept = await post('written while Tap did not follow')
    await tap.addRepos([alice.did])
    // Tap's backfill brings the new mood (live: false) but says nothing of the delete.
    await waitFor(async () => (await byRkey(kept.rkey))?.mood === 'written while Tap did not follow', { what: 'the mood from the re-backfill', timeoutMs: 30_000 })
    await waitFor(async () => (await byRkey(doomed.rkey))?.deleted === true, { what: "the delete, found by moodsync's backfill", timeoutMs: 30_000 })
    expect(await moods().countDocuments({ 'atproto.did': alice.did, 'atproto.rkey': kept.rkey })).toBe(1)
  })

  it('a Tap restart re-sends what it had not heard acknowledged; MongoDB does not change, and new moods still arrive', async () => {
    await waitFor(async () => (await tapStat('/stats/outbox-buffer')).outbox_buffer === 0, { what: "Tap's outbox to drain" })
    await waitFor(async () => (await t.db.collection(COLLECTIONS.backfill).countDocuments()) === 0, { what: 'the backfill queue to drain' })
    await service.destroy()
    const before = await snapshot()
    tap = await tap.restart()
    // Its repos and records, known again: Tap resumes and may redeliver.
    service = await start()
    const after = await post('after the Tap restart')
    await waitFor(async () => (await byRkey(after.rkey))?.mood === 'after the Tap restart', { what: 'the mood after the restart', timeoutMs: 30_000 })
    const docs = JSON.parse(await snapshot())[0] as MoodDoc[]
    const old = docs.filter((d) => d.atproto?.rkey !== after.rkey)
    expect(JSON.stringify([old, JSON.parse(before)[1]])).toBe(before)
    expect(await valueOf(service.indexer.metrics.applied, { result: 'inserted' })).toBe(1)
  })
})
