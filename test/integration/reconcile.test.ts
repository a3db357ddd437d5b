import { TID } from '@atproto/common-web'
import { ObjectId } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import type { StatusReport } from '../../src/reconcile/status.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { createIdResolver } from '../../src/atproto/identity.ts'
import { silentLogger } from '../../src/logger.ts'
import { dedupe } from '../../src/reconcile/dedupe.ts'
import { RepoReader } from '../../src/atproto/repo-reader.ts'
import { RepoSync } from '../../src/reconcile/repo-sync.ts'
import { Store } from '../../src/store/store.ts'
import { RateBudget, WRITE_COST } from '../../src/writer/budget.ts'
import { Writer } from '../../src/writer/writer.ts'
import { cliRunner } from '../../rig/cli.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount, listMoodRecords } from '../../rig/network.ts'
import { compareWithRepos, inSync } from '../../rig/repos.ts'

const t = useTestDb('reconcile')
const SECRET = 'reconcile-test-secret-0123456789abcdef'

/** The platform's mess, by construction; every expected count below is derived from these. */
const MOODS = 222
const MIGRATED = 150 // the old migration wrote records for the first 150 moods...
const DUPLICATED = 140 // ...twice for the first 140 (it was interrupted and re-run)
const GONE = [140, 141, 142, 143] // records deleted on the PDS while nothing listened
const EDITED = [144, 145, 146] // records edited by another client
const LOST_LINK = [220, 221] // records written, but the document never learnt its rkey
const OTHER_CLIENT = 5 // moods posted from another ATProto app
const NO_ACCOUNT_MOODS = 10
const LEGACY_MONGOID = 75 // the oldest records name their mood by `mongoId` instead of `ref`
const LEGACY_TEXT = [147, 148] // an old platform script wrote `text` instead of `mood` (147 with ref, 148 with mongoId)
const TOO_LONG = 160 // a mood over the published 5,000 bytes, never written: migration refuses it
const AT_LIMIT = 161 // a mood of exactly 5,000 bytes, never written: migration writes it
const SKEW_MS = 3 // the platform took MongoDB's `when` and the record's from two `new Date()` calls
// Records from other clients the readers refuse, one of each kind (a 5,000-byte one is valid).
const NO_REF = 1
const OVERSIZE = 1
const INVALID = 2 // a mood that is no string; a `when` that names no calendar day
const bytes = (s: string) => Buffer.byteLength(s, 'utf8')
const ofBytes = (n: number) => '✨'.repeat(Math.floor(n / 3)) + 'a'.repeat(n % 3)

describe('status, dedupe, repair and migrate clean up the platform\'s real mess', () => {
  let network: TestNetwork
  let alice: TestAccount
  let env: Record<string, string>
  const ids: ObjectId[] = []
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)

  const { run, json } = cliRunner(() => env)
  const aliceStatus = async () => {
    const report = await json<StatusReport>('status')
    return { report, alice: report.subjects.find((s) => s.user === 'auth0|alice')!.counts, nobody: report.subjects.find((s) => s.user === 'auth0|nobody')!.counts }
  }
  const listRecords = () => listMoodRecords(alice)
  const write = async (writes: { rkey: string; value: Record<string, unknown> }[]) => {
    for (let i = 0; i < writes.length; i += 200) {
      await alice.agent.com.atproto.repo.applyWrites({
        repo: alice.did,
        writes: writes.slice(i, i + 200).map((w) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey: w.rkey, value: { $type: MOOD_NSID, ...w.value } })),
      })
    }
  }
  const snapshotDb = async () => JSON.stringify(await moods().find().sort({ _id: 1 }).toArray())
  const repoRev = async () => (await alice.agent.com.atproto.sync.getLatestCommit({ did: alice.did })).data.rev

  beforeAll(async () => {
    network = await TestNetwork.start()
    alice = await network.createAccount('alice')
    env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, PDS_URL: network.pdsUrl, PLC_URL: network.plcUrl, MOODSYNC_SECRET: SECRET, LOG_LEVEL: 'warn' }
    await ensureIndexes(t.db)
    await t.db.collection(COLLECTIONS.users).insertMany([
      { _id: 'auth0|alice' as never, atproto: { did: alice.did, password: alice.password } },
      { _id: 'auth0|nobody' as never },
    ])

    // 222 moods in MongoDB, in today's shape: the migrated ones carry only atproto.rkey.
    const base = Date.parse('2024-03-01T12:00:00.000Z')
    const docs: MoodDoc[] = []
    const first: { rkey: string; value: Record<string, unknown> }[] = []
    for (let i = 0; i < MOODS; i++) {
      const _id = new ObjectId()
      ids.push(_id)
      const text = i === TOO_LONG ? ofBytes(5001) : i === AT_LIMIT ? ofBytes(5000) : `mood number ${i}`
      const doc: MoodDoc = { _id, user: 'auth0|alice', mood: text, when: new Date(base + i * 60_000) }
      if (i < MIGRATED || LOST_LINK.includes(i)) {
        const rkey = TID.nextStr()
        // The oldest records carry the legacy `mongoId`; later ones `ref`; two have `text` for `mood`.
        const id = i < LEGACY_MONGOID || i === LEGACY_TEXT[1] ? { mongoId: _id.toHexString() } : { ref: _id.toHexString() }
        const body = LEGACY_TEXT.includes(i) ? { text: doc.mood } : { mood: doc.mood }
        // The record's `when` a few milliseconds after MongoDB's where the document never learnt its rkey.
        const when = new Date(doc.when.getTime() + (LOST_LINK.includes(i) ? SKEW_MS : 0)).toISOString()
        first.push({ rkey, value: { ...body, when, ...id } })
        if (!LOST_LINK.includes(i)) doc.atproto = { rkey }
      }
      docs.push(doc)
    }
    for (let i = 0; i < NO_ACCOUNT_MOODS; i++) docs.push({ _id: new ObjectId(), user: 'auth0|nobody', mood: `offline ${i}`, when: new Date(base + i) })
    await moods().insertMany(docs)
    await write(first)
    // The re-run of the interrupted migration: a second record for each of the first 140.
    await write(first.slice(0, DUPLICATED).map((w) => ({ rkey: TID.nextStr(), value: { mood: w.value.mood, when: w.value.when, mongoId: (w.value.mongoId ?? w.value.ref) as string } })))
    // Another app's moods, one of them exactly 5,000 bytes (valid); each carries a ref of its client's choosing.
    await write(Array.from({ length: OTHER_CLIENT }, (_, i) => ({ rkey: TID.nextStr(), value: { mood: i === 0 ? ofBytes(5000) : `from another app ${i}`, when: new Date().toISOString(), ref: clientRef(), via: 'other-client' } })))
    // Records no valid mood can come from: quarantined, never applied, not drift; each counted by its kind.
    await write([
      { rkey: TID.nextStr(), value: { mood: 'no ref at all', when: new Date().toISOString() } },
      { rkey: TID.nextStr(), value: { mood: ofBytes(5001), when: new Date().toISOString(), ref: clientRef() } },
      { rkey: TID.nextStr(), value: { mood: 42, when: 'yesterday', ref: clientRef() } },
      { rkey: TID.nextStr(), value: { mood: 'on a day that does not exist', when: '2025-02-30T12:00:00Z', ref: clientRef() } },
    ])
    for (const i of GONE) await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey: first[i]!.rkey })
    for (const i of EDITED) {
      await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey: first[i]!.rkey, record: { $type: MOOD_NSID, ...first[i]!.value, mood: `edited elsewhere ${i}` } })
    }
    // A post whose PDS write has not happened yet: in the outbox, not drift for long.
    await new Writer(t.db, { pdsUrl: network.pdsUrl, secret: SECRET }).enqueue({ user: 'auth0|alice', text: 'queued while the PDS was away' })
  })
  afterAll(async () => {
    await network?.stop()
  })

  it('status counts each kind of drift exactly and exits non-zero', async () => {
    const { report, alice: counts, nobody } = await aliceStatus()
    expect(report.code).toBe(1)
    expect(counts).toEqual({
      inSync: MIGRATED - GONE.length - EDITED.length - LEGACY_TEXT.length,
      atprotoOnly: OTHER_CLIENT + LOST_LINK.length,
      mongoOnly: GONE.length,
      unmigrated: MOODS - MIGRATED - LOST_LINK.length,
      differs: EDITED.length,
      duplicates: DUPLICATED,
      unconfirmed: 1,
      noAccount: 0,
      invalid: INVALID,
      noRef: NO_REF,
      legacyText: LEGACY_TEXT.length,
      oversize: OVERSIZE,
      // The oldest records, and every duplicate the re-run wrote, name their mood by mongoId.
      legacyMongoId: LEGACY_MONGOID + DUPLICATED,
      tooLong: 0, // not yet: migration finds it
      refused: 0,
    })
    expect(nobody).toMatchObject({ noAccount: NO_ACCOUNT_MOODS, inSync: 0 })
    expect(report.drift).toBe(OTHER_CLIENT + LOST_LINK.length + GONE.length + (MOODS - MIGRATED - LOST_LINK.length) + EDITED.length + DUPLICATED + 1)
    // The duplicate groups keep the record MongoDB points to.
    const groups = report.subjects.find((s) => s.user === 'auth0|alice')!.duplicates!
    const pointed = new Map((await moods().find({ 'atproto.rkey': { $exists: true } }).toArray()).map((d) => [d._id.toHexString(), d.atproto!.rkey]))
    expect(groups).toHaveLength(DUPLICATED)
    for (const g of groups) expect(g.keep).toBe(pointed.get(g.ref))

    const human = await run('status', '--user', 'auth0|alice')
    expect(human.code).toBe(1)
    expect(human.out).toMatch(/^DRIFT: \d+ moods or records out of sync/)
    expect(human.out).toMatch(/auth0\|alice/)
  })

  it('dry runs and a dedupe without --delete change nothing', async () => {
    const before = await snapshotDb()
    const rev = await repoRev()
    const dedupe = await json<{ duplicates: number; deleted: number }>('dedupe')
    expect(dedupe).toMatchObject({ duplicates: DUPLICATED, deleted: 0, code: 0 })
    const plan = await json<{ plan: Record<string, number> }>('repair', '--dry-run', '--user', 'auth0|alice')
    expect(plan.plan).toEqual({ restore: OTHER_CLIENT + LOST_LINK.length, update: EDITED.length, markDeleted: GONE.length, push: MOODS - MIGRATED - LOST_LINK.length, retry: 1, confirm: MIGRATED - GONE.length - EDITED.length - LEGACY_TEXT.length, duplicates: DUPLICATED })
    const migratePlan = await json<{ queued: number; linked: number }>('migrate', '--dry-run')
    expect(migratePlan).toMatchObject({ queued: MOODS - MIGRATED - LOST_LINK.length, linked: LOST_LINK.length })
    expect(await snapshotDb()).toBe(before)
    expect(await repoRev()).toBe(rev)
  })

  it('dedupe --delete stays within the account\'s rate budget: over it, nothing is deleted and it says why', async () => {
    const store = new Store({ mongodb: { uri: t.uri, db: t.name } })
    await store.start()
    try {
      const reader = new RepoReader({ collection: MOOD_NSID, idResolver: createIdResolver(network.plcUrl) })
      const writer = new Writer(t.db, { pdsUrl: network.pdsUrl, secret: SECRET, budget: new RateBudget({ hourly: DUPLICATED * WRITE_COST.delete - 1 }) })
      const ctx = { store, reader, sync: new RepoSync({ store, reader }), writer, log: silentLogger }
      const rev = await repoRev()
      const report = await dedupe(ctx, [{ user: 'auth0|alice', did: alice.did }], { delete: true })
      expect(report).toMatchObject({ duplicates: DUPLICATED, deleted: 0 })
      expect(report.uncheckedByKind).toEqual({ 'rate-limited': 1 })
      expect(report.unchecked[0]!.message).toMatch(/budget exhausted/)
      expect(await repoRev()).toBe(rev)
    } finally {
      await store.destroy()
    }
  })

  it('dedupe --delete, migrate and repair bring everything in sync; nothing is written twice', async () => {
    const dedupe = await json<{ deleted: number }>('dedupe', '--delete')
    expect(dedupe).toMatchObject({ deleted: DUPLICATED, code: 0 })

    const migrate = await json<{ linked: number; queued: number; resumed: number; invalid: number; flushed: { written: number; failed: number }; confirmed: number }>('migrate')
    // The mood over 5,000 bytes is refused, with nothing written for it: a refusal exits 1.
    expect(migrate.code).toBe(1)
    const unmigrated = MOODS - MIGRATED - LOST_LINK.length
    expect(migrate).toMatchObject({ linked: LOST_LINK.length, queued: unmigrated - 1, invalid: 1, resumed: 1 })
    expect(migrate.flushed).toMatchObject({ written: unmigrated - 1 + 1, failed: 0 })
    expect(migrate.confirmed).toBe(migrate.flushed.written)
    const tooLong = await moods().findOne({ _id: ids[TOO_LONG] })
    expect(tooLong?.atproto).toEqual({ state: 'failed', refused: 'oversize', error: `mood is ${bytes(tooLong!.mood).toLocaleString('en-US')} bytes, over the published limit of 5,000 bytes` })
    expect(await moods().findOne({ _id: ids[AT_LIMIT] })).toMatchObject({ atproto: { state: 'confirmed', rkey: expect.any(String) } })
    // Linked by ref, not by when: the record's `when` is SKEW_MS later, and the record's wins.
    for (const i of LOST_LINK) {
      const linked = (await moods().findOne({ _id: ids[i] }))!
      const record = (await listRecords()).find((r) => r.rkey === linked.atproto?.rkey)!
      expect(linked.when.toISOString()).toBe(record.value.when)
    }

    const repair = await json<{ done: { applied: Record<string, number> } }>('repair')
    expect(repair.code).toBe(0)
    // The edited ones take the record's text; the legacy ones in sync get their record's CID.
    expect(repair.done.applied).toMatchObject({ inserted: OTHER_CLIENT, updated: EDITED.length + MIGRATED - GONE.length - EDITED.length - LEGACY_TEXT.length, deleted: GONE.length })

    const { report, alice: counts } = await aliceStatus()
    expect(report.code).toBe(0)
    expect(report.drift).toBe(0)
    const live = MOODS - GONE.length + 1 + OTHER_CLIENT
    // The legacy `text` records' moods stay as they are (never marked deleted): normalize rewrites those records.
    expect(counts).toMatchObject({ inSync: live - LEGACY_TEXT.length - 1, invalid: INVALID, noRef: NO_REF, oversize: OVERSIZE, legacyText: LEGACY_TEXT.length, legacyMongoId: LEGACY_MONGOID, tooLong: 1 })
    for (const i of LEGACY_TEXT) expect((await moods().findOne({ _id: ids[i] }))?.deleted).toBeUndefined()

    // Both sides now hold the same moods, once each; edits on ATProto won; every mood has one
    // record (the legacy `text` ones are invalid until normalize rewrites them).
    const comparison = await compareWithRepos(t.db, [alice])
    const legacyKeys = (await moods().find({ _id: { $in: LEGACY_TEXT.map((i) => ids[i]!) } }).toArray()).map((d) => `${alice.did}/${d.atproto!.rkey}`)
    expect(comparison).toEqual({ missing: [], extra: expect.arrayContaining(legacyKeys), stale: [], duplicates: [] })
    expect(comparison.extra).toHaveLength(LEGACY_TEXT.length)
    const records = await listRecords()
    const refs = records.map((r) => (r.value.ref ?? r.value.mongoId) as string | undefined).filter((r) => r !== undefined)
    expect(new Set(refs).size).toBe(refs.length)
    for (const i of EDITED) expect((await moods().findOne({ _id: ids[i] }))?.mood).toBe(`edited elsewhere ${i}`)
    for (const i of GONE) expect((await moods().findOne({ _id: ids[i] }))?.deleted).toBe(true)
    for (const i of LOST_LINK) expect((await moods().findOne({ _id: ids[i] }))?.atproto?.rkey).toBeDefined()
    // Nothing left in the outbox but the mood the schema refuses, marked with its reason.
    expect(await moods().find({ user: 'auth0|alice', 'atproto.state': { $in: ['pending', 'written', 'failed'] } }).map((d) => d._id.toHexString()).toArray()).toEqual([ids[TOO_LONG]!.toHexString()])
  })

  it('a second run of every command changes nothing', async () => {
    const before = await snapshotDb()
    const rev = await repoRev()
    expect(await json('dedupe', '--delete')).toMatchObject({ duplicates: 0, deleted: 0, code: 0 })
    const migrate = await json<{ queued: number; linked: number; flushed: { written: number } }>('migrate')
    expect(migrate).toMatchObject({ queued: 0, linked: 0, flushed: { written: 0 }, code: 0 })
    const repair = await json<{ plan: Record<string, number> }>('repair')
    expect(Object.values(repair.plan).every((n) => n === 0)).toBe(true)
    expect((await run('status')).code).toBe(0)
    expect(await snapshotDb()).toBe(before)
    expect(await repoRev()).toBe(rev)
  })

  it('normalize rewrites the mongoId and text records valid (same rkey), a second run changes nothing, and the repo reads back attached', async () => {
    const before = await snapshotDb()
    const rev = await repoRev()
    const legacy = (await listRecords()).filter((r) => (r.value.ref === undefined && r.value.mongoId !== undefined) || (r.value.mood === undefined && r.value.text !== undefined))
    expect(legacy).toHaveLength(LEGACY_MONGOID + LEGACY_TEXT.length)
    const plan = await json<{ rewritten: number; left: { reason: string }[] }>('normalize', '--dry-run')
    expect(plan).toMatchObject({ code: 0, rewritten: legacy.length })
    // Everything else is left and listed, each with its reason.
    expect(plan.left.map((l) => l.reason)).toEqual(expect.arrayContaining(['mood is 5,001 bytes, over the published limit of 5,000 bytes', 'ref is missing (and no legacy mongoId)', expect.stringMatching(/^when names no calendar day: 2025-02-30/), expect.stringMatching(/\$\.mood/)]))
    expect(plan.left).toHaveLength(NO_REF + OVERSIZE + INVALID)
    expect(await snapshotDb()).toBe(before)
    expect(await repoRev()).toBe(rev)

    const done = await json<{ rewritten: number; changes: { rkey: string; legacy: string; from: string; to: string }[]; applied: Record<string, number> }>('normalize', '--user', 'auth0|alice')
    expect(done).toMatchObject({ code: 0, rewritten: legacy.length })
    expect(new Set(done.changes.map((c) => c.rkey))).toEqual(new Set(legacy.map((r) => r.rkey)))
    expect(done.changes.filter((c) => c.legacy !== 'mongoId').map((c) => c.legacy).sort()).toEqual(['mongoId+text', 'text'])
    const after = new Map((await listRecords()).map((r) => [r.rkey, r]))
    for (const change of done.changes) {
      const record = after.get(change.rkey)!
      expect(record.cid).toBe(change.to)
      expect(record.value).toMatchObject({ mood: expect.any(String), ref: expect.any(String) })
      expect(record.value.mongoId).toBeUndefined()
      expect(record.value.text).toBeUndefined()
      // MongoDB took the new CID and rev.
      expect((await moods().findOne({ 'atproto.rkey': change.rkey }))?.atproto).toMatchObject({ cid: change.to, rev: expect.any(String) })
    }
    for (const i of LEGACY_TEXT) expect((await moods().findOne({ _id: ids[i] }))!.mood).toBe(after.get((await moods().findOne({ _id: ids[i] }))!.atproto!.rkey!)!.value.mood)

    const settled = await snapshotDb()
    const again = await json<{ rewritten: number }>('normalize')
    expect(again).toMatchObject({ code: 0, rewritten: 0 })
    expect(await snapshotDb()).toBe(settled)

    // Read back through the indexer's apply path: nothing to change, every legacy record attached to its mood.
    expect(await json('backfill', '--user', 'auth0|alice', '--force')).toMatchObject({ code: 0 })
    expect(await snapshotDb()).toBe(settled)
    const { report, alice: counts } = await aliceStatus()
    expect(report.code).toBe(0)
    expect(counts).toMatchObject({ legacyMongoId: 0, legacyText: 0, noRef: NO_REF, oversize: OVERSIZE, invalid: INVALID, tooLong: 1 })
    expect(await compareWithRepos(t.db, [alice])).toEqual({ missing: [], extra: [], stale: [], duplicates: [] })
  })

  it('an inactive account: status counts its visible moods, repair hides them, a backfill brings them back', async () => {
    const hana = await network.createAccount('hana')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|hana' as never, atproto: { did: hana.did, password: hana.password } })
    const posted = await Promise.all([0, 1, 2].map((i) => hana.agent.com.atproto.repo.createRecord({ repo: hana.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: `hana ${i}`, when: new Date().toISOString() } })))
    expect((await json('backfill', '--user', 'auth0|hana')).code).toBe(0)
    await hana.agent.com.atproto.server.deactivateAccount({})

    const before = await json<StatusReport>('status', '--user', 'auth0|hana')
    expect(before.code).toBe(1)
    expect(before.subjects[0]).toMatchObject({ inactive: 'deactivated', counts: { mongoOnly: posted.length, inSync: 0 } })
    expect(await json('repair', '--user', 'auth0|hana')).toMatchObject({ code: 0, done: { applied: { deleted: posted.length } } })
    expect(await moods().countDocuments({ user: 'auth0|hana', 'atproto.hidden': 'deactivated' })).toBe(posted.length)
    expect((await json('status', '--user', 'auth0|hana')).code).toBe(0)
    const migrate = await json<{ uncheckedByKind: Record<string, number> }>('migrate', '--user', 'auth0|hana')
    expect(migrate.uncheckedByKind).toEqual({ inactive: 1 })
    expect(migrate.code).toBe(3)

    await hana.agent.com.atproto.server.activateAccount()
    expect((await json('backfill', '--user', 'auth0|hana')).code).toBe(0)
    expect(await moods().countDocuments({ user: 'auth0|hana', deleted: { $ne: true } })).toBe(posted.length)
    const after = await json<StatusReport>('status', '--user', 'auth0|hana')
    expect(after).toMatchObject({ code: 0, drift: 0 })
    expect(after.subjects[0]!.counts.inSync).toBe(posted.length)
  })

  it('bad usage and unknown users get a clear error', async () => {
    // A --user nobody has is bad usage (2), never confused with drift (1).
    const unknown = await run('status', '--user', 'auth0|ghost')
    expect(unknown.code).toBe(2)
    expect(unknown.err).toMatch(/no platform user "auth0\|ghost"/)
    const bad = await run('repair', '--concurrency', 'lots')
    expect(bad.code).toBe(2)
    expect(bad.err).toMatch(/--concurrency must be an integer/)
    // Nothing a command printed holds the account password or the secret.
    const all = await run('status', '--json')
    expect(all.out + all.err).not.toContain(alice.password)
    expect(all.out + all.err).not.toContain(SECRET)
  })
})
