import { clientRef } from '../../rig/client-ref.ts'
import { MongoNetworkError } from 'mongodb'
import { describe, expect, it } from 'vitest'
import type { IngestEvent, Source, SourceStats } from '../../src/ingest/events.ts'
import { Indexer } from '../../src/ingest/indexer.ts'
import { Backoff } from '../../src/retry.ts'
import type { RecordOp } from '../../src/store/ops.ts'
import type { CollectionDefinition } from '../../src/sync/collection.ts'
import { MOOD_NSID, moodCollection } from '../../src/sync/mood.ts'
import { MemoryStore } from '../../rig/memory-store.ts'
import { scriptedSource } from '../../rig/scripted-source.ts'
import { valueOf } from '../../src/metrics.ts'

/** Every `apply` first asks `fault`: a promise it returns stands in for the store's answer; undefined lets the real apply run. */
function faultyApply(store: MemoryStore, fault: () => Promise<never> | undefined): void {
  const records = store.records.bind(store)
  store.records = (collection: string) => {
    const real = records(collection)
    return { ...real, apply: async (ops: readonly RecordOp<object>[]) => fault() ?? real.apply(ops) }
  }
}

const scripted = (events: IngestEvent[]) => scriptedSource(events)

const DID = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const NOTE = 'test.example.note'
const note: CollectionDefinition<{ text: string }, { text: string }> = {
  nsid: NOTE,
  mongoCollection: 'notes',
  parse: (r) => (typeof (r as { text?: unknown })?.text === 'string' ? { ok: true, value: { text: (r as { text: string }).text } } : { ok: false, reason: 'text must be a string' }),
  fields: (v) => ({ text: v.text }),
}
const mood = (rkey: string, text: string) => ({ action: 'upsert' as const, collection: MOOD_NSID, rkey, cid: `cid-${rkey}`, record: { $type: MOOD_NSID, ref: clientRef(), mood: text, when: '2025-01-01T00:00:00Z' } })

describe('indexer on an in-memory store', () => {
  it('routes each op to its collection, quarantines what its definition refuses, and saves the last cursor', async () => {
    const store = new MemoryStore()
    const events: IngestEvent[] = [
      { kind: 'commit', cursor: 1, did: DID, rev: '3kaaaaaaaaa22', ops: [mood('3kaaaaaaaaa22', 'hello'), { action: 'upsert', collection: NOTE, rkey: '3kbbbbbbbbb22', cid: 'c', record: { text: 'a note' } }] },
      { kind: 'commit', cursor: 2, did: DID, rev: '3kccccccccc22', ops: [{ action: 'upsert', collection: NOTE, rkey: '3kccccccccc22', cid: 'c2', record: { text: 7 } }] },
      { kind: 'commit', cursor: 3, did: DID, rev: '3kddddddddd22', ops: [{ action: 'upsert', collection: 'app.bsky.feed.post', rkey: '3kddddddddd22', cid: 'c3', record: {} }] },
      { kind: 'skip', cursor: 4, count: 5 },
    ]
    const indexer = new Indexer({ store, source: scripted(events), collections: [moodCollection, note] })
    await indexer.run(new AbortController().signal)
    expect(store.live('moods')).toBe(1)
    expect(store.live('notes')).toBe(1)
    expect(store.quarantined.map((q) => [q.rkey, q.reason])).toEqual([['3kccccccccc22', 'text must be a string']])
    expect(await store.cursors.get('scripted')).toEqual({ cursor: 4, instance: 'test' })
    expect(await valueOf(indexer.metrics.received, { kind: 'commit' })).toBe(3)
    // A skip that stands for a run of foreign frames counts each of them.
    expect(await valueOf(indexer.metrics.received, { kind: 'skip' })).toBe(5)

    // The same events again: the store is asked for the same ops, and keeps the same state.
    const again = new Indexer({ store, source: scripted(events), collections: [moodCollection, note] })
    await store.cursors.save('scripted', { cursor: 0, instance: 'test' })
    await again.run(new AbortController().signal)
    expect(store.live('moods')).toBe(1)
    expect(store.live('notes')).toBe(1)
    expect(store.applied.inserted).toBe(2)
  })

  it('an event the store cannot take for what it holds is quarantined alone; the rest applies and the cursor moves on', async () => {
    const store = new MemoryStore()
    const records = store.records.bind(store)
    // A stand-in for a store refusing one record (a bug, a stack overflow): no MongoDB error behind it.
    store.records = (collection: string) => {
      const real = records(collection)
      return { ...real, apply: async (ops: readonly RecordOp<object>[]) => (ops.some((op) => op.rkey === '3kpoisonpoi22') ? Promise.reject(new RangeError('Maximum call stack size exceeded')) : real.apply(ops)) }
    }
    const events: IngestEvent[] = ['3kaaaaaaaaa22', '3kbbbbbbbbb22', '3kpoisonpoi22', '3kccccccccc22', '3kddddddddd22'].map((rkey, i) => ({ kind: 'commit', cursor: i + 1, did: DID, rev: rkey, ops: [mood(rkey, `mood ${i}`)] }))
    const indexer = new Indexer({ store, source: scripted(events) })
    await indexer.run(new AbortController().signal)
    expect(store.live('moods')).toBe(4)
    expect(store.quarantined).toEqual([expect.objectContaining({ rkey: '3kpoisonpoi22', cursor: 3, reason: expect.stringMatching(/could not be applied: Maximum call stack/) })])
    expect(await store.cursors.get('scripted')).toEqual({ cursor: 5, instance: 'test' })
  })

  it('a MongoDB that is unavailable is waited for: the batch is retried, nothing is quarantined', async () => {
    const store = new MemoryStore()
    let failures = 3
    faultyApply(store, () => (failures-- > 0 ? Promise.reject(new MongoNetworkError('connection reset')) : undefined))
    const events: IngestEvent[] = [{ kind: 'commit', cursor: 1, did: DID, rev: '3kaaaaaaaaa22', ops: [mood('3kaaaaaaaaa22', 'waits')] }]
    const indexer = new Indexer({ store, source: scripted(events), storeBackoff: new Backoff({ baseMs: 1, maxMs: 2 }) })
    await indexer.run(new AbortController().signal)
    expect(store.live('moods')).toBe(1)
    expect(store.quarantined).toEqual([])
    expect(await valueOf(indexer.metrics.storeErrors)).toBe(3)
  })

  it('a MongoDB operation that never answers is abandoned after the deadline and tried again (a hung connection cannot hold the stream)', async () => {
    // A hand-made fault: the first apply never settles, as on a connection gone silent mid-request.
    const store = new MemoryStore()
    let hung = 0
    faultyApply(store, () => (hung++ === 0 ? new Promise<never>(() => {}) : undefined))
    const events: IngestEvent[] = [{ kind: 'commit', cursor: 1, did: DID, rev: '3kaaaaaaaaa22', ops: [mood('3kaaaaaaaaa22', 'after a hang')] }]
    const indexer = new Indexer({ store, source: scripted(events), storeTimeoutMs: 50, storeBackoff: new Backoff({ baseMs: 1, maxMs: 2 }) })
    await indexer.run(new AbortController().signal)
    expect(store.live('moods')).toBe(1)
    expect(store.quarantined).toEqual([])
    expect(await valueOf(indexer.metrics.storeErrors)).toBe(1)
    expect(await store.cursors.get('scripted')).toEqual({ cursor: 1, instance: 'test' })
  })

  it('a record nested 100,000 deep is quarantined for its shape, not a stack overflow', async () => {
    const store = new MemoryStore()
    const deep = JSON.parse(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)
    const events: IngestEvent[] = [
      { kind: 'commit', cursor: 1, did: DID, rev: '3kaaaaaaaaa22', ops: [{ action: 'upsert', collection: MOOD_NSID, rkey: '3kaaaaaaaaa22', cid: 'c', record: { $type: MOOD_NSID, ref: clientRef(), mood: deep, when: '2025-01-01T00:00:00Z' } }] },
      { kind: 'commit', cursor: 2, did: DID, rev: '3kbbbbbbbbb22', ops: [mood('3kbbbbbbbbb22', 'after it')] },
    ]
    await new Indexer({ store, source: scripted(events) }).run(new AbortController().signal)
    expect(store.live('moods')).toBe(1)
    expect(store.quarantined).toEqual([expect.objectContaining({ rkey: '3kaaaaaaaaa22', reason: 'record nests deeper than 32 levels' })])
  })

  it("a lone event's position is saved within the save interval, though nothing follows it", async () => {
    const store = new MemoryStore()
    const stats: SourceStats = { connected: true, reconnects: 0, framesReceived: 0 }
    const quiet: Source = {
      id: 'quiet',
      instance: 'test',
      stats,
      async *events(signal) {
        yield [{ kind: 'commit', cursor: 7, did: DID, rev: '3kaaaaaaaaa22', ops: [mood('3kaaaaaaaaa22', 'the only one today')] }]
        // Then nothing, until shutdown: a quiet stream.
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
      },
    }
    const abort = new AbortController()
    const running = new Indexer({ store, source: quiet, cursorSaveIntervalMs: 200 }).run(abort.signal)
    const deadline = Date.now() + 2_000
    while ((await store.cursors.get('quiet')) === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(await store.cursors.get('quiet')).toEqual({ cursor: 7, instance: 'test' })
    abort.abort()
    await running
  })

  it("a resync that asks for it only reads repos we know: a platform user's, or one with records", async () => {
    const store = new MemoryStore()
    const [user, stranger] = ['did:plc:useruseruseruseruseruser', 'did:plc:strangerstrangerstranger']
    store.owners.set(user, 'auth0|someone')
    const resync = (cursor: number, did: string, onlyIfKnown: boolean): IngestEvent => ({ kind: 'resync', cursor, did, reason: 'test', onlyIfKnown })
    const events: IngestEvent[] = [
      { kind: 'commit', cursor: 1, did: DID, rev: '3kaaaaaaaaa22', ops: [mood('3kaaaaaaaaa22', 'hello')] },
      resync(2, DID, true),
      resync(3, user, true),
      resync(4, stranger, true),
      resync(5, 'did:plc:relayrelayrelayrelayrelay', false),
    ]
    await new Indexer({ store, source: scripted(events) }).run(new AbortController().signal)
    expect([...store.queued].sort()).toEqual([DID, user, 'did:plc:relayrelayrelayrelayrelay'].sort())
  })

  it('status changes keep each DID in order, and the DIDs of a batch share each write', async () => {
    const store = new MemoryStore()
    const log: string[] = []
    const records = store.records.bind(store)
    store.records = (collection: string) => {
      const real = records(collection)
      const dids = (list: readonly string[]) => list.map((d) => d.slice(-1)).join('')
      return {
        ...real,
        apply: async (ops: readonly RecordOp<object>[]) => {
          log.push(`apply ${ops.map((op) => `${op.did.slice(-1)}${op.rkey.slice(3, 4)}`).join(' ')}`)
          // The first batch lets the rest through and takes a while: the rest arrives as one batch.
          if (log.length === 1) release(), await new Promise((resolve) => setTimeout(resolve, 50))
          return real.apply(ops)
        },
        hideDids: async (list: readonly string[], status: string) => (log.push(`hide ${dids(list)}`), real.hideDids(list, status)),
        restoreDids: async (list: readonly string[]) => (log.push(`restore ${dids(list)}`), real.restoreDids(list)),
      }
    }
    const [a, b] = ['did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb']
    const commit = (cursor: number, did: string, rkey: string): IngestEvent => ({ kind: 'commit', cursor, did, rev: rkey, ops: [mood(rkey, 'x')] })
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    const source = scripted([])
    source.events = async function* () {
      yield [commit(1, a, '3kaaaaaaaaa22')]
      await held
      yield [commit(2, a, '3kbbbbbbbbb22')]
      yield [{ kind: 'account', cursor: 3, did: a, active: false, status: 'deactivated' }]
      yield [commit(4, b, '3kccccccccc22')]
      yield [{ kind: 'account', cursor: 5, did: b, active: false, status: 'deactivated' }]
      yield [commit(6, a, '3kddddddddd22')]
      yield [{ kind: 'account', cursor: 7, did: a, active: true }]
    }
    await new Indexer({ store, source }).run(new AbortController().signal)
    // a's second post before a is hidden, b's post and status in the same writes as a's, a's third post after.
    expect(log).toEqual(['apply aa', 'apply ab bc', 'hide ab', 'apply ad', 'restore a'])
  })
})
