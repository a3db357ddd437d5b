import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IngestService } from '../../src/app/service.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { GoatClient } from '../../rig/goat.ts'
import { startIngest } from '../../rig/ingest.ts'
import { useTestDb, type TestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { Topology } from '../../rig/topology.ts'
import { waitFor } from '../../rig/wait.ts'

// Every source mode against the real server it reads in production, all at once on one PDS:
// classic Jetstream (on the PDS), Jetstream v2 and the firehose (on the relay), and Tap (on
// the relay). Moods come from goat and from @atproto/api, clients that are not ours.
const MODES = ['jetstream-v1', 'jetstream-v2', 'firehose', 'tap'] as const
type Mode = (typeof MODES)[number]
const dbs: Record<Mode, TestDb> = {
  'jetstream-v1': useTestDb('real_jetstream_v1'),
  'jetstream-v2': useTestDb('real_jetstream_v2'),
  firehose: useTestDb('real_firehose'),
  tap: useTestDb('real_tap'),
}

describe('every source mode against the real servers', () => {
  let network: TestNetwork
  let topology: Topology
  let alice: TestAccount
  let goat: GoatClient
  const services = {} as Record<Mode, IngestService>
  const moods = (mode: Mode) => dbs[mode].db.collection<MoodDoc>(COLLECTIONS.moods)
  const inEvery = (what: string, probe: (doc: MoodDoc | null, mode: Mode) => boolean, rkey: () => string) =>
    Promise.all(
      MODES.map((mode) =>
        waitFor(async () => probe(await moods(mode).findOne({ 'atproto.did': alice.did, 'atproto.rkey': rkey() }), mode), { what: `${what} through ${mode}`, timeoutMs: 30_000 }),
      ),
    )
  const env = (mode: Mode): Record<string, string> => {
    if (mode === 'jetstream-v1') return { MOODSYNC_SOURCE: 'jetstream', JETSTREAM_URL: topology.jetstreamV1!.url }
    if (mode === 'jetstream-v2') return { MOODSYNC_SOURCE: 'jetstream', JETSTREAM_URL: topology.jetstreamV2!.url }
    if (mode === 'firehose') return { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: topology.relay.firehoseUrl, PLC_URL: network.plcUrl }
    return { MOODSYNC_SOURCE: 'tap', TAP_URL: topology.tap!.url, TAP_ADMIN_PASSWORD: topology.tap!.adminPassword, PLC_URL: network.plcUrl, PDS_URL: network.pdsUrl }
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    topology = await Topology.start(network, { jetstreamV1: true, jetstreamV2: true, tap: true })
    alice = await network.createAccount('alice')
    goat = await GoatClient.login({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl, did: alice.did, password: alice.password })
    for (const mode of MODES) {
      await dbs[mode].db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
      // Tap mode asks Tap to track the platform's users itself (MOODSYNC_TAP_ADD_USERS, on by default).
      services[mode] = await startIngest(dbs[mode], env(mode))
    }
    await waitFor(() => MODES.every((mode) => services[mode].source.stats.connected), { what: 'every source connected', timeoutMs: 30_000 })
  })
  afterAll(async () => {
    for (const mode of MODES) await services[mode]?.destroy()
    await goat?.close()
    await topology?.stop()
    await network?.stop()
  })

  it('a mood created, updated and deleted with goat follows in MongoDB through every source', async () => {
    const created = await goat.create({ $type: MOOD_NSID, ref: clientRef(), mood: 'from goat', when: '2026-01-02T03:04:05.000Z' })
    await inEvery('the goat create', (doc) => doc?.mood === 'from goat' && doc.user === 'auth0|alice' && doc.atproto?.cid === created.cid, () => created.rkey)

    const updated = await goat.update(created.rkey, { $type: MOOD_NSID, ref: clientRef(), mood: 'edited by goat', when: '2026-01-02T03:04:05.000Z' })
    expect(updated.cid).not.toBe(created.cid)
    await inEvery('the goat update', (doc) => doc?.mood === 'edited by goat' && doc.atproto?.cid === updated.cid, () => created.rkey)

    await goat.delete(MOOD_NSID, created.rkey)
    await inEvery('the goat delete', (doc) => doc?.deleted === true, () => created.rkey)
  })

  it('a mood from @atproto/api arrives through every source, once', async () => {
    const res = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'from @atproto/api', when: new Date().toISOString() } })
    const rkey = res.data.uri.split('/').pop()!
    await inEvery('the @atproto/api mood', (doc) => doc?.mood === 'from @atproto/api' && doc.atproto?.cid === res.data.cid, () => rkey)
    for (const mode of MODES) expect(await moods(mode).countDocuments({ 'atproto.rkey': rkey })).toBe(1)
  })
})
