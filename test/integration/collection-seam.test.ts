import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdResolver } from '../../src/atproto/identity.ts'
import { FirehoseSource } from '../../src/ingest/firehose.ts'
import { Indexer } from '../../src/ingest/indexer.ts'
import { COLLECTIONS, type QuarantineDoc, type RecordDoc } from '../../src/store/collections.ts'
import { Database } from '../../src/store/database.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import type { CollectionDefinition } from '../../src/sync/collection.ts'
import { MOOD_NSID, moodCollection } from '../../src/sync/mood.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { TestNetwork, type TestAccount } from '../../rig/network.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'

/**
 * The seam: a record type is a definition, and the pipeline (source, indexer, store) is
 * written once. This collection exists only here, for the proof: the platform's KidLisp
 * snippets, `{ source: string (1-2000 chars), when: datetime }`, kept in `t_kidlisp`.
 */
const KIDLISP = 'computer.aesthetic.kidlisp'
interface Snippet {
  source: string
  when: Date
}
const kidlisp: CollectionDefinition<Snippet, { source: string; when: Date }> = {
  nsid: KIDLISP,
  mongoCollection: 't_kidlisp',
  parse(record) {
    const r = record as { source?: unknown; when?: unknown } | null
    if (typeof r?.source !== 'string' || r.source.length === 0 || r.source.length > 2000) return { ok: false, reason: 'source must be a string of 1 to 2000 characters' }
    const when = typeof r.when === 'string' ? new Date(r.when) : new Date(Number.NaN)
    if (Number.isNaN(when.getTime())) return { ok: false, reason: 'when must be a datetime' }
    return { ok: true, value: { source: r.source, when } }
  },
  fields: (value) => ({ source: value.source, when: value.when }),
}

const t = useTestDb('collection_seam')

describe('a second collection, defined in the test only, flows through the same pipeline', () => {
  let network: TestNetwork
  let alice: TestAccount
  let store: Database
  const snippets = () => t.db.collection<RecordDoc<Snippet>>('t_kidlisp')
  const byRkey = (rkey: string) => snippets().findOne({ 'atproto.did': alice.did, 'atproto.rkey': rkey })

  /** A running indexer for both collections on the real PDS firehose; stopped by the returned function. */
  const run = () => {
    const source = new FirehoseSource({ url: network.firehoseUrl, collections: [MOOD_NSID, KIDLISP], idResolver: createIdResolver(network.plcUrl) })
    const indexer = new Indexer({ store, source, collections: [moodCollection, kidlisp], cursorSaveIntervalMs: 50 })
    const abort = new AbortController()
    const done = indexer.run(abort.signal)
    return { indexer, source, stop: async () => (abort.abort(), await done) }
  }
  const write = async (record: Record<string, unknown>) => {
    const res = await alice.agent.com.atproto.repo.createRecord({ repo: alice.did, collection: KIDLISP, record: { $type: KIDLISP, ...record } })
    return res.data.uri.split('/').pop()!
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    alice = await network.createAccount('alice')
    await ensureIndexes(t.db, [COLLECTIONS.moods, kidlisp.mongoCollection])
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
    store = new Database(t.db)
  })
  afterAll(async () => {
    await network?.stop()
  })

  it('creates, updates, deletes, quarantines and hides records of the new collection; a replay changes nothing', async () => {
    const ingest = run()
    try {
      await waitFor(() => ingest.source.stats.connected, { what: 'the firehose connection' })
      const rkey = await write({ source: '(wipe blue)', when: '2025-03-04T05:06:07.000Z' })
      const doc = await waitFor(() => byRkey(rkey).then((d) => d ?? undefined), { what: 'the snippet in MongoDB' })
      expect(doc).toMatchObject({ user: 'auth0|alice', source: '(wipe blue)', atproto: { did: alice.did, rkey } })
      expect(doc.when).toEqual(new Date('2025-03-04T05:06:07.000Z'))
      // The mood collection's own documents stay apart.
      expect(await t.db.collection(COLLECTIONS.moods).countDocuments()).toBe(0)

      const put = await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: KIDLISP, rkey, record: { $type: KIDLISP, source: '(wipe red)', when: '2025-03-04T05:06:07.000Z' } })
      await waitFor(async () => (await byRkey(rkey))?.atproto?.cid === put.data.cid, { what: 'the update' })
      expect((await byRkey(rkey))?.source).toBe('(wipe red)')

      const bad = await write({ source: 42, when: '2025-03-04T05:06:07.000Z' })
      const entry = await waitFor(() => t.db.collection<QuarantineDoc>(COLLECTIONS.quarantine).findOne({ did: alice.did, rkey: bad }).then((d) => d ?? undefined), { what: 'the invalid snippet in quarantine' })
      expect(entry.reason).toMatch(/source must be a string/)
      expect(await byRkey(bad)).toBeNull()

      await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: KIDLISP, rkey })
      await waitFor(async () => (await byRkey(rkey))?.deleted === true, { what: 'the delete' })

      const kept = await write({ source: '(ink yellow)', when: '2025-03-04T05:06:08.000Z' })
      await waitFor(() => byRkey(kept).then((d) => d ?? undefined), { what: 'the second snippet' })
      await alice.agent.com.atproto.server.deactivateAccount({})
      await waitFor(async () => (await byRkey(kept))?.atproto?.hidden === 'deactivated', { what: 'the account status to hide the snippet' })
      await alice.agent.com.atproto.server.activateAccount()
      await waitFor(async () => (await byRkey(kept))?.atproto?.hidden === undefined && (await byRkey(kept))?.deleted === undefined, { what: 'the snippet to come back' })
    } finally {
      await ingest.stop()
    }

    // The same events again, from the start of the stream: nothing changes. (Stopping saved the cursor.)
    const before = JSON.stringify(await snippets().find().sort({ _id: 1 }).toArray())
    const last = (await store.cursors.get('firehose'))?.cursor
    await store.cursors.save('firehose', { cursor: 0, instance: network.firehoseUrl })
    const replay = run()
    try {
      await waitFor(async () => (replay.indexer.state.appliedCursor ?? 0) >= last!, { what: 'the replay to reach the last cursor' })
    } finally {
      await replay.stop()
    }
    expect(JSON.stringify(await snippets().find().sort({ _id: 1 }).toArray())).toBe(before)
    expect(await valueOf(replay.indexer.metrics.applied, { result: 'inserted' })).toBe(0)
  })
})
