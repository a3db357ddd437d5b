import { ObjectId } from 'mongodb'
import { beforeAll, describe, expect, it } from 'vitest'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { capabilitiesOf } from '../../src/store/capabilities.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { fillDids, migrateStorage } from '../../src/store/migrations.ts'
import { MoodStore, type DeleteOp, type UpsertOp } from '../../src/store/records.ts'
import { CursorStore } from '../../src/store/cursors.ts'
import { useTestDb } from '../../rig/mongo.ts'

const t = useTestDb('store')
const DID_A = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const DID_B = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'

const upsert = (rkey: string, rev: string, text: string, extra: Partial<UpsertOp> = {}): UpsertOp => ({
  kind: 'upsert',
  did: DID_A,
  rkey,
  rev,
  cid: `bafy-${rkey}-${rev}`,
  fields: { mood: text, when: new Date('2025-01-02T03:04:05.678Z') },
  user: 'auth0|alice',
  ...extra,
})
const del = (rkey: string, rev: string, did = DID_A): DeleteOp => ({ kind: 'delete', did, rkey, rev })

/** Every document of a collection, sorted, as canonical JSON: "byte for byte" comparisons. */
async function snapshot(name: string): Promise<string> {
  const docs = await t.db.collection(name).find().sort({ _id: 1 }).toArray()
  return JSON.stringify(docs)
}

describe('store', () => {
  let moods: MoodStore
  beforeAll(async () => {
    await ensureIndexes(t.db)
    await ensureIndexes(t.db) // idempotent: the second call must not fail
    moods = new MoodStore(t.db)
  })

  it('the same upsert twice leaves one identical document', async () => {
    const op = upsert('3kaaaaaaaaa22', '3kaaaaaaaaa22', 'first')
    expect(await moods.apply([op])).toMatchObject({ inserted: 1 })
    const before = await snapshot(COLLECTIONS.moods)
    expect(await moods.apply([op])).toMatchObject({ inserted: 0, updated: 0, unchanged: 1 })
    expect(await snapshot(COLLECTIONS.moods)).toBe(before)
    const docs = await moods.collection.find({ 'atproto.rkey': '3kaaaaaaaaa22' }).toArray()
    expect(docs).toHaveLength(1)
    expect(docs[0]).toMatchObject({
      user: 'auth0|alice',
      mood: 'first',
      atproto: { did: DID_A, rkey: '3kaaaaaaaaa22', cid: op.cid, rev: op.rev },
    })
    expect(docs[0]!.when).toEqual(op.fields.when)
  })

  it('an echo planned before a local edit never overwrites the edit', async () => {
    const rkey = '3kqqqqqqqqq22'
    const rev = '3kqqqqqqqqq22'
    const _id = new ObjectId()
    // A mood the writer wrote (version 1), whose echo the indexer has read but not yet written...
    const written: MoodDoc = { _id, user: 'auth0|alice', mood: 'draft one', when: new Date('2025-01-02T03:04:05.678Z'), atproto: { did: DID_A, rkey, cid: 'bafy-first', rev, state: 'written', op: 'put', version: 1 } }
    await moods.collection.insertOne(written)
    // ...when the user edits it (same rev: nothing is on the network yet; version 2).
    await moods.collection.updateOne({ _id }, { $set: { mood: 'draft two', 'atproto.cid': 'bafy-second', 'atproto.state': 'pending', 'atproto.version': 2 } })
    const echo = upsert(rkey, rev, 'draft one', { cid: 'bafy-first' })
    // The echo as planned from the document read before the edit (the `known` hint stands for
    // that read): its guarded write must miss, and the replan sees the pending edit.
    const result = await moods.apply([echo], { insertFirst: false, known: [written] })
    expect(result).toMatchObject({ pending: 1, confirmed: 0 })
    expect(await moods.collection.findOne({ _id })).toMatchObject({ mood: 'draft two', atproto: { cid: 'bafy-second', state: 'pending', version: 2 } })
  })

  it('an update replaces the content; an older event never overwrites a newer state', async () => {
    const rkey = '3kbbbbbbbbb22'
    await moods.apply([upsert(rkey, '3kbbbbbbbbb22', 'v1')])
    expect(await moods.apply([upsert(rkey, '3kbbbbbbbbb33', 'v2')])).toMatchObject({ updated: 1 })
    expect(await moods.apply([upsert(rkey, '3kbbbbbbbbb22', 'v1')])).toMatchObject({ stale: 1, updated: 0 })
    expect((await moods.get(DID_A, rkey))?.mood).toBe('v2')
  })

  it('ops for one record inside a batch collapse to the newest', async () => {
    const rkey = '3kccccccccc22'
    const result = await moods.apply([upsert(rkey, '3kccccccccc44', 'newest'), upsert(rkey, '3kccccccccc33', 'middle'), del(rkey, '3kccccccccc22')])
    expect(result).toMatchObject({ inserted: 1 })
    expect((await moods.get(DID_A, rkey))?.mood).toBe('newest')
  })

  it('(DID, rkey) is unique, and documents with no ATProto record do not collide', async () => {
    const col = moods.collection
    const doc = (extra: Partial<MoodDoc>): MoodDoc => ({ _id: new ObjectId(), user: 'auth0|x', mood: 'm', when: new Date(), ...extra })
    await col.insertOne(doc({ atproto: { did: DID_B, rkey: '3kddddddddd22' } }))
    await expect(col.insertOne(doc({ atproto: { did: DID_B, rkey: '3kddddddddd22' } }))).rejects.toMatchObject({ code: 11000 })
    // Same rkey under another DID is another record.
    await col.insertOne(doc({ atproto: { did: DID_A, rkey: '3kddddddddd22' } }))
    // Moods with no ATProto record yet may be many; so may legacy ones with only an rkey, on
    // MongoDB. A server that ignores partial filters gets a sparse index instead, which may let
    // two rkey-only documents with the same rkey collide (a documented rig deviation).
    await col.insertMany([doc({}), doc({}), doc({ atproto: { rkey: '3klegacyaaa22' } })])
    const second = col.insertOne(doc({ atproto: { rkey: '3klegacyaaa22' } }))
    if ((await capabilitiesOf(t.db)).partialIndexes) await second
    else await second.catch(() => {})
  })

  it('soft delete marks deleted, keeps the bookkeeping, and is idempotent', async () => {
    const rkey = '3keeeeeeeee22'
    await moods.apply([upsert(rkey, '3keeeeeeeee22', 'to delete')])
    expect(await moods.apply([del(rkey, '3keeeeeeeee33')])).toMatchObject({ deleted: 1 })
    const after = await snapshot(COLLECTIONS.moods)
    expect(await moods.apply([del(rkey, '3keeeeeeeee33')])).toMatchObject({ deleted: 0, unchanged: 1 })
    expect(await snapshot(COLLECTIONS.moods)).toBe(after)
    const doc = await moods.get(DID_A, rkey)
    expect(doc).toMatchObject({ deleted: true, mood: 'to delete', atproto: { did: DID_A, rkey, rev: '3keeeeeeeee33' } })
    // The create, replayed after the delete, is older: the mood stays deleted.
    expect(await moods.apply([upsert(rkey, '3keeeeeeeee22', 'to delete')])).toMatchObject({ stale: 1 })
    expect((await moods.get(DID_A, rkey))?.deleted).toBe(true)
    // A delete for a record never seen changes nothing.
    expect(await moods.apply([del('3knevereeee22', '3knevereeee22')])).toMatchObject({ unchanged: 1 })
    expect(await moods.listByDid(DID_A)).not.toContainEqual(expect.objectContaining({ atproto: expect.objectContaining({ rkey }) }))
    expect(await moods.listByDid(DID_A, { includeDeleted: true })).toContainEqual(expect.objectContaining({ atproto: expect.objectContaining({ rkey }) }))
  })

  it('a record whose ref names a document of the same user attaches to it instead of adding one', async () => {
    const _id = new ObjectId()
    await moods.collection.insertOne({ _id, user: 'auth0|alice', mood: 'written first', when: new Date('2025-05-05T05:05:05Z') })
    const op = upsert('3kfffffffff22', '3kfffffffff22', 'written first', { fields: { mood: 'written first', when: new Date('2025-05-05T05:05:05Z') }, ref: _id.toHexString() })
    expect(await moods.apply([op])).toMatchObject({ attached: 1, inserted: 0 })
    expect(await moods.collection.findOne({ _id })).toMatchObject({ atproto: { did: DID_A, rkey: '3kfffffffff22', cid: op.cid } })
    expect(await moods.apply([op])).toMatchObject({ unchanged: 1 })

    // Another user's document cannot be claimed through ref.
    const other = new ObjectId()
    await moods.collection.insertOne({ _id: other, user: 'auth0|bob', mood: 'bob', when: new Date() })
    const hijack = upsert('3kggggggggg22', '3kggggggggg22', 'mine now', { fields: { mood: 'mine now', when: new Date() }, ref: other.toHexString() })
    expect(await moods.apply([hijack])).toMatchObject({ inserted: 1, attached: 0 })
    expect(await moods.collection.findOne({ _id: other })).toMatchObject({ mood: 'bob' })
  })

  it('a batch of 300 updates completes (bulk writes go in chunks the test server can take)', async () => {
    const rkeys = Array.from({ length: 300 }, (_, i) => `3kbulk${String(i).padStart(4, '0')}aa2`.slice(0, 13))
    const firstRound = rkeys.map((rkey) => upsert(rkey, '3kbulkaaaaa22', `first ${rkey}`))
    expect(await moods.apply(firstRound)).toMatchObject({ inserted: 300 })
    const second = await moods.apply(rkeys.map((rkey) => upsert(rkey, '3kbulkaaaaa33', `second ${rkey}`)))
    expect(second).toMatchObject({ updated: 300 })
    expect(await moods.collection.countDocuments({ mood: /^second / })).toBe(300)
  }, 120_000)

  it('positions are saved and read back per logical source, naming their instance', async () => {
    const cursors = new CursorStore(t.db)
    expect(await cursors.get('jetstream')).toBeUndefined()
    await cursors.save('jetstream', { cursor: 1_732_000_000_123_456, instance: 'ws://x' })
    await cursors.save('firehose', { cursor: 42, instance: 'ws://y', timeUs: 1_732_000_000_000_000 })
    await cursors.save('jetstream', { cursor: 1_732_000_000_999_999, instance: 'ws://z' })
    expect(await cursors.get('jetstream')).toEqual({ cursor: 1_732_000_000_999_999, instance: 'ws://z' })
    expect(await cursors.get('firehose')).toEqual({ cursor: 42, instance: 'ws://y', timeUs: 1_732_000_000_000_000 })
  })

  it('a position saved before 0.2 (keyed kind:url) carries over, the newest of its kind', async () => {
    const docs = t.db.collection(COLLECTIONS.cursors)
    await docs.insertMany([
      { _id: 'tap:http://old' as never, cursor: 5, updatedAt: new Date(1_000) },
      { _id: 'tap:http://newer' as never, cursor: 9, updatedAt: new Date(2_000) },
    ])
    expect(await new CursorStore(t.db).get('tap')).toEqual({ cursor: 9, instance: 'http://newer' })
  })
})

describe('legacy migration: fill DIDs', () => {
  const m = useTestDb('migration')

  it('fills the DID from users.atproto.did, touches nothing else, and is safe to run twice', async () => {
    const db = m.db
    await ensureIndexes(db)
    await db.collection<{ _id: string; atproto?: { did: string; password: string } }>(COLLECTIONS.users).insertMany([
      { _id: 'auth0|jeffrey', atproto: { did: DID_A, password: 'plain-pw' } },
      { _id: 'auth0|nodid' },
    ])
    const moodsCol = db.collection<MoodDoc>(COLLECTIONS.moods)
    const legacy: MoodDoc[] = [
      { _id: new ObjectId(), user: 'auth0|jeffrey', mood: 'one', when: new Date('2023-01-01T00:00:00Z'), atproto: { rkey: '3legacy00001' } },
      { _id: new ObjectId(), user: 'auth0|jeffrey', mood: 'two', when: new Date('2023-01-02T00:00:00Z'), deleted: true, atproto: { rkey: '3legacy00002' } },
      { _id: new ObjectId(), user: 'auth0|nodid', mood: 'three', when: new Date('2023-01-03T00:00:00Z'), atproto: { rkey: '3legacy00003' } },
      { _id: new ObjectId(), user: 'auth0|jeffrey', mood: 'no record yet', when: new Date('2023-01-04T00:00:00Z') },
      { _id: new ObjectId(), user: null, mood: 'anonymous', when: new Date('2023-01-05T00:00:00Z'), atproto: { rkey: '3legacy00005' } },
    ]
    await moodsCol.insertMany(legacy)
    const usersBefore = await snapshot(COLLECTIONS.users)

    const first = await migrateStorage(db)
    expect(first.fillDids).toEqual({ filled: 2, noDid: 2, conflicts: 0 })
    const after = await moodsCol.find().sort({ _id: 1 }).toArray()
    for (const [i, doc] of after.entries()) {
      const original = legacy.find((l) => l._id.equals(doc._id))!
      const expected = original.user === 'auth0|jeffrey' && original.atproto ? { ...original, atproto: { ...original.atproto, did: DID_A } } : original
      expect(doc, `document ${i}`).toEqual(expected)
    }
    const snap = await snapshot(COLLECTIONS.moods)

    const second = await fillDids(db)
    expect(second).toEqual({ filled: 0, noDid: 2, conflicts: 0 })
    expect(await snapshot(COLLECTIONS.moods)).toBe(snap)
    expect(await snapshot(COLLECTIONS.users)).toBe(usersBefore)
  })

  it('processes starting at once all get through the migration (seen: two replicas, one refused with E11000)', async () => {
    await ensureIndexes(m.db)
    const runs = await Promise.allSettled(Array.from({ length: 8 }, () => migrateStorage(m.db)))
    expect(runs.filter((r) => r.status === 'rejected')).toEqual([])
    expect(await m.db.collection(COLLECTIONS.migrations).countDocuments({ _id: 'fill-dids' as never })).toBe(1)
  })

  it('a legacy rkey that duplicates an indexed record is left for dedupe, not an error', async () => {
    const db = m.db
    const moodsCol = db.collection<MoodDoc>(COLLECTIONS.moods)
    await moodsCol.insertOne({ _id: new ObjectId(), user: 'auth0|jeffrey', mood: 'dup', when: new Date(), atproto: { rkey: '3legacy00001' } })
    expect(await fillDids(db)).toEqual({ filled: 0, noDid: 2, conflicts: 1 })
  })
})
