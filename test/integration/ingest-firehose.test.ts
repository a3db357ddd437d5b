import { ObjectId } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc, type QuarantineDoc } from '../../src/store/collections.ts'
import type { IngestService } from '../../src/app/service.ts'
import { startIngest } from '../../rig/ingest.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { RelayServer } from '../../rig/relay.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

const t = useTestDb('ingest_firehose')

// Production reads a relay: Bluesky's relay (indigo) re-verifies the PDS's commits and
// numbers the stream itself, and this reads its `subscribeRepos`.
describe('ingest from the relay firehose', () => {
  let network: TestNetwork
  let relay: RelayServer
  let alice: TestAccount
  let bob: TestAccount
  let service: IngestService
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
  const byRkey = (did: string, rkey: string) => moods().findOne({ 'atproto.did': did, 'atproto.rkey': rkey })
  const env = () => ({ MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: relay.firehoseUrl, PLC_URL: network.plcUrl })

  beforeAll(async () => {
    network = await TestNetwork.start()
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    alice = await network.createAccount('alice')
    bob = await network.createAccount('bob')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } })
    service = await startIngest(t, env())
    await waitFor(() => service.source.stats.connected, { what: 'the firehose connection' })
  })
  afterAll(async () => {
    await service?.destroy()
    await relay?.stop()
    await network?.stop()
  })

  const post = async (who: TestAccount, mood: string) => {
    const res = await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood, ref: clientRef(), when: new Date().toISOString() } })
    return { rkey: res.data.uri.split('/').pop()!, cid: res.data.cid }
  }

  it('a mood created with @atproto/api appears, changes and is deleted in MongoDB', async () => {
    const { rkey, cid } = await post(alice, 'made on the PDS')
    const doc = await waitFor(() => byRkey(alice.did, rkey).then((d) => d ?? undefined), { what: 'the new mood in MongoDB' })
    expect(doc).toMatchObject({ user: 'auth0|alice', mood: 'made on the PDS', atproto: { did: alice.did, rkey, cid } })
    expect(doc.deleted).toBeUndefined()

    const put = await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'edited', when: new Date().toISOString() } })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.atproto?.cid === put.data.cid, { what: 'the update' })
    expect((await byRkey(alice.did, rkey))?.mood).toBe('edited')

    await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey })
    await waitFor(async () => (await byRkey(alice.did, rkey))?.deleted === true, { what: 'the delete' })
    expect(await moods().countDocuments({ 'atproto.rkey': rkey })).toBe(1)
  })

  it('a mood from a DID that is no platform user is kept with user: null', async () => {
    const { rkey } = await post(bob, 'from another client')
    const doc = await waitFor(() => byRkey(bob.did, rkey).then((d) => d ?? undefined), { what: "bob's mood" })
    expect(doc.user).toBeNull()
  })

  it('invalid records go to quarantine with their reason, and the next valid mood still arrives', async () => {
    const bad = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 12345, when: 'yesterday' } })
    const badRkey = bad.data.uri.split('/').pop()!
    await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey: 'self', record: { $type: MOOD_NSID, ref: clientRef(), mood: 'wrong key', when: new Date().toISOString() } })
    const long = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'x'.repeat(6000), when: new Date().toISOString() } })
    const longRkey = long.data.uri.split('/').pop()!
    const good = await post(alice, 'still flowing')

    await waitFor(() => byRkey(alice.did, good.rkey).then((d) => d ?? undefined), { what: 'the valid mood after the bad ones' })
    const q = t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine)
    const entry = await q.findOne({ did: alice.did, rkey: badRkey })
    expect(entry?.reason).toMatch(/string/i)
    expect(entry?.cid).toBe(bad.data.cid)
    expect((await q.findOne({ did: alice.did, rkey: 'self' }))?.reason).toMatch(/not a TID/)
    expect(await q.findOne({ did: alice.did, rkey: longRkey })).toMatchObject({ refusal: 'oversize', reason: 'mood is 6,000 bytes, over the published limit of 5,000 bytes' })
    expect(await byRkey(alice.did, badRkey)).toBeNull()
    expect(await valueOf(service.indexer.metrics.quarantined, { kind: 'record' })).toBeGreaterThanOrEqual(3)
  })

  it('every shape in the platform\'s repos: ref and legacy mongoId attach (same user only); text, no ref, oversize and impossible dates are quarantined with their reason', async () => {
    const ofBytes = (n: number) => '✨'.repeat(Math.floor(n / 3)) + 'a'.repeat(n % 3)
    const [byRef, byMongoId, carols] = [new ObjectId(), new ObjectId(), new ObjectId()]
    await moods().insertMany([
      { _id: byRef, user: 'auth0|alice', mood: 'named by ref', when: new Date() },
      { _id: byMongoId, user: 'auth0|alice', mood: 'named by mongoId', when: new Date() },
      { _id: carols, user: 'auth0|carol', mood: "carol's, named by alice's record", when: new Date() },
    ])
    const create = async (record: Record<string, unknown>) => {
      const res = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, when: new Date().toISOString(), ...record } })
      return { rkey: res.data.uri.split('/').pop()!, cid: res.data.cid }
    }
    const ref = await create({ mood: 'named by ref', ref: byRef.toHexString() })
    const mongoId = await create({ mood: 'named by mongoId', mongoId: byMongoId.toHexString() })
    const foreign = await create({ mood: 'names a mood of another user', mongoId: carols.toHexString() })
    const atLimit = await create({ mood: ofBytes(5000), ref: clientRef() })
    const refused = {
      text: await create({ text: 'an old script wrote text', ref: clientRef() }),
      noRef: await create({ mood: 'neither ref nor mongoId' }),
      oversize: await create({ mood: ofBytes(5001), ref: clientRef() }),
      impossible: await create({ mood: 'on 30 February', when: '2025-02-30T12:00:00Z', ref: clientRef() }),
    }
    const last = await post(alice, 'after every shape')
    await waitFor(() => byRkey(alice.did, last.rkey).then((d) => d ?? undefined), { what: 'the mood after every shape' })

    expect(await moods().findOne({ _id: byRef })).toMatchObject({ atproto: { did: alice.did, rkey: ref.rkey, cid: ref.cid } })
    expect(await moods().findOne({ _id: byMongoId })).toMatchObject({ atproto: { did: alice.did, rkey: mongoId.rkey, cid: mongoId.cid } })
    // Only within one user: carol's mood is not claimed; alice's record is a mood of its own.
    expect((await moods().findOne({ _id: carols }))?.atproto).toBeUndefined()
    expect(await byRkey(alice.did, foreign.rkey)).toMatchObject({ user: 'auth0|alice', mood: 'names a mood of another user' })
    expect((await byRkey(alice.did, atLimit.rkey))?.mood).toBe(ofBytes(5000))

    const q = t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine)
    const entry = (r: { rkey: string }) => q.findOne({ did: alice.did, rkey: r.rkey })
    expect(await entry(refused.text)).toMatchObject({ refusal: 'legacy-text', reason: "legacy record: 'text' instead of 'mood' (moodsync normalize rewrites it)" })
    expect(await entry(refused.noRef)).toMatchObject({ refusal: 'no-ref', reason: 'ref is missing (and no legacy mongoId)' })
    expect(await entry(refused.oversize)).toMatchObject({ refusal: 'oversize', reason: 'mood is 5,001 bytes, over the published limit of 5,000 bytes' })
    expect(await entry(refused.impossible)).toMatchObject({ refusal: 'invalid', reason: 'when names no calendar day: 2025-02-30 does not exist (got "2025-02-30T12:00:00Z")' })
    for (const r of Object.values(refused)) expect(await byRkey(alice.did, r.rkey)).toBeNull()
  })

  it('serves /healthz and /metrics', async () => {
    const health = await fetch(`${service.ops.url}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toMatchObject({ healthy: true, connected: true, source: 'firehose', instance: relay.firehoseUrl })
    const metrics = await (await fetch(`${service.ops.url}/metrics`)).text()
    expect(metrics).toMatch(/^moodsync_records_applied_total\{result="inserted"\} \d+$/m)
    expect(metrics).toMatch(/^moodsync_quarantined_total\{kind="record"\} \d+$/m)
    expect(metrics).toMatch(/^moodsync_apply_seconds_count \d+$/m)
  })

  it('deactivate hides, activate restores, takedown hides, account deletion deletes', async () => {
    const kept = await post(alice, 'survives the round trips')
    const gone = await post(alice, 'deleted while hidden')
    await waitFor(() => byRkey(alice.did, gone.rkey).then((d) => d ?? undefined), { what: 'the moods' })
    const live = () => moods().countDocuments({ 'atproto.did': alice.did, deleted: { $ne: true } })
    const liveBefore = await live()
    expect(liveBefore).toBeGreaterThanOrEqual(2)

    await alice.agent.com.atproto.server.deactivateAccount({})
    await waitFor(async () => (await live()) === 0, { what: 'moods hidden on deactivation' })
    expect(await byRkey(alice.did, kept.rkey)).toMatchObject({ deleted: true, mood: 'survives the round trips', atproto: { hidden: 'deactivated' } })

    await alice.agent.com.atproto.server.activateAccount()
    await waitFor(async () => (await live()) === liveBefore, { what: 'moods restored on activation' })
    expect((await byRkey(alice.did, kept.rkey))?.atproto?.hidden).toBeUndefined()

    const admin = { headers: network.adminHeaders(), encoding: 'application/json' as const }
    const subject = { $type: 'com.atproto.admin.defs#repoRef', did: alice.did }
    await network.net.pds.getAgent().com.atproto.admin.updateSubjectStatus({ subject, takedown: { applied: true, ref: 'test' } }, admin)
    await waitFor(async () => (await live()) === 0, { what: 'moods hidden on takedown' })
    expect((await byRkey(alice.did, kept.rkey))?.atproto?.hidden).toBe('takendown')
    await network.net.pds.getAgent().com.atproto.admin.updateSubjectStatus({ subject, takedown: { applied: false } }, admin)
    await waitFor(async () => (await live()) === liveBefore, { what: 'moods restored after the takedown is lifted' })

    await network.net.pds.getAgent().com.atproto.admin.deleteAccount({ did: alice.did }, admin)
    await waitFor(async () => (await live()) === 0, { what: 'moods deleted with the account' })
    expect(await moods().countDocuments({ 'atproto.did': alice.did, 'atproto.hidden': { $exists: true } })).toBe(0)
  })

  it('replaying the whole stream again leaves MongoDB byte-for-byte the same', async () => {
    // Let the service settle, then stop it so the saved cursor covers everything applied.
    const marker = await post(bob, 'marker')
    await waitFor(() => byRkey(bob.did, marker.rkey).then((d) => d ?? undefined), { what: 'the marker' })
    await service.destroy()
    const saved = service.indexer.state.savedCursor
    expect(saved).toBeGreaterThan(0)
    const snapshot = async () =>
      JSON.stringify(
        await Promise.all(
          [COLLECTIONS.moods, COLLECTIONS.quarantine].map((name) => t.db.collection(name).find().sort({ _id: 1 }).toArray()),
        ),
      )
    const before = await snapshot()

    // Rewind the cursor to the start of the relay's stream and replay everything.
    await t.db.collection(COLLECTIONS.cursors).updateOne({ _id: 'firehose' as never }, { $set: { cursor: 0 } })
    service = await startIngest(t, env())
    await waitFor(() => (service.indexer.state.appliedCursor ?? 0) >= saved!, { what: 'the replay to reach the old cursor' })
    expect(await snapshot()).toBe(before)
    expect(await valueOf(service.indexer.metrics.applied, { result: 'inserted' })).toBe(0)
    // The replay covered account creations: their empty-repo #sync events are not gaps.
    expect(await t.db.collection(COLLECTIONS.gaps).find().toArray()).toEqual([])
  })
})

