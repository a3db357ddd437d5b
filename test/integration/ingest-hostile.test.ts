import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import type { IngestService } from '../../src/app/service.ts'
import { JetstreamSource } from '../../src/ingest/jetstream.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { startIngest } from '../../rig/ingest.ts'
import { JetstreamServer } from '../../rig/jetstream-server.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { waitFor } from '../../rig/wait.ts'
import { valueOf } from '../../src/metrics.ts'
import { clientRef } from '../../rig/client-ref.ts'

const t = useTestDb('ingest_hostile')
const HOSTILE = 'did:plc:hostilehostilehostileho'
const GOOD = 'did:plc:goodgoodgoodgoodgoodgood'
const FRAMES = 10_000
/** Growth of this process's RSS while the flood is applied (the server runs here too). */
const RSS_GROWTH_LIMIT_MB = 400

/** A TID-shaped rkey from a number: distinct, sortable, valid. */
const tid = (n: number) => `3l${n.toString(32).padStart(11, 'a').replace(/[^a-z2-7]/g, 'a')}`.slice(0, 13)
const nested = (open: string, close: string, depth: number) => `${open.repeat(depth)}${close.repeat(depth)}`

/** Frame `i` of the flood: every kind of bad input a stream can carry, as raw text or bytes. */
function hostile(i: number, timeUs: number): string | Uint8Array {
  const commit = (record: string, extra = '') =>
    `{"did":"${HOSTILE}","time_us":${timeUs},"kind":"commit","commit":{"rev":"${tid(i)}","operation":"create","collection":"${MOOD_NSID}","rkey":"${tid(i)}","cid":"bafyhostile${i}"${extra},"record":${record}}}`
  const when = '"when":"2025-01-01T00:00:00Z","ref":"hostile-client"'
  switch (i % 12) {
    case 0: return `{"did":"${HOSTILE}","time_us":${timeUs},"kind":"comm`
    case 1: return `{"did":12345,"time_us":${timeUs},"kind":"commit"}`
    case 2: return `{"did":"${HOSTILE}","time_us":"soon","kind":"commit"}`
    case 3: return commit(`{"$type":"${MOOD_NSID}","mood":"${'x'.repeat(i % 500 === 3 ? 1_000_000 : 6_000)}",${when}}`)
    case 4: return commit(`{"$type":"${MOOD_NSID}","mood":${nested('[', ']', i % 1000 === 4 ? 100_000 : 40)},${when}}`)
    case 5: return commit(`{"$type":"${MOOD_NSID}","mood":"deep elsewhere",${when},"x":${nested('{"a":', '}', i % 1000 === 5 ? 100_000 : 40).replace(/:}/, ':1}')}}`)
    case 6: return `{"did":"${HOSTILE}","time_us":${timeUs},"kind":"labels","labels":{}}`
    case 7: return randomBytes(64 + (i % 200))
    case 8: return commit(`{"$type":"${MOOD_NSID}","mood":{"$where":"1","a.b":2},${when}}`)
    case 9: return commit(`{"$type":"${MOOD_NSID}","mood":"bad key",${when}}`).replace(`"rkey":"${tid(i)}"`, '"rkey":"self"')
    case 10: return commit(`{"$type":"${MOOD_NSID}","mood":"no cid",${when}}`).replace(`"cid":"bafyhostile${i}",`, '')
    default: return commit(i % 2 ? 'null' : '"a string"')
  }
}

describe('ingest under a flood of hostile frames (stand-in Jetstream: the real one cannot be made to send them)', () => {
  let server: JetstreamServer | undefined
  let service: IngestService | undefined
  afterAll(async () => {
    await service?.destroy()
    await server?.stop()
  })

  it(`${FRAMES} hostile frames of many kinds mixed with 100 valid moods: every valid mood arrives, nothing hostile is stored, memory stays bounded, and it stops promptly`, async () => {
    server = await JetstreamServer.start()
    service = await startIngest(t, {}, { source: new JetstreamSource({ url: server.url }) })
    await waitFor(() => server!.connections === 1, { what: 'the connection' })
    const rssBefore = process.memoryUsage().rss
    let peak = rssBefore
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25)
    const valid = new Set<string>()
    let timeUs = Date.now() * 1000
    try {
      for (let i = 0; i < FRAMES; i++) {
        server.sendRaw(hostile(i, ++timeUs))
        if (i % 100 === 50) {
          const rkey = tid(1_000_000 + i)
          // Valid, with `$`- and dotted keys beside the mood, which are not stored.
          timeUs = server.publish({ did: GOOD, kind: 'commit', commit: { rev: rkey, operation: 'create', collection: MOOD_NSID, rkey, cid: `bafygood${i}`, record: { $type: MOOD_NSID, ref: clientRef(), mood: `valid ${i}`, when: new Date().toISOString(), $extra: 1, 'dotted.key': 2 } } })
          valid.add(rkey)
        }
        // Let the socket drain now and then, as a real server's stream would.
        if (i % 250 === 0) await new Promise((resolve) => setImmediate(resolve))
      }
      await waitFor(async () => (await t.db.collection(COLLECTIONS.moods).countDocuments({ 'atproto.did': GOOD })) === valid.size, { what: 'every valid mood', timeoutMs: 120_000, intervalMs: 200 })
    } finally {
      clearInterval(sampler)
    }
    const stored = await t.db.collection<MoodDoc>(COLLECTIONS.moods).find().toArray()
    expect(new Set(stored.map((d) => d.atproto?.rkey))).toEqual(valid)
    expect(stored.every((d) => Object.keys(d).every((k) => !k.startsWith('$') && !k.includes('.')))).toBe(true)
    expect(await t.db.collection(COLLECTIONS.moods).countDocuments({ 'atproto.did': HOSTILE })).toBe(0)
    expect(service.indexer.state.storeFailingSince).toBeUndefined()
    expect(await valueOf(service.indexer.metrics.quarantined, { kind: 'record' })).toBeGreaterThan(0)
    const growthMb = (peak - rssBefore) / 2 ** 20
    expect(growthMb).toBeLessThan(RSS_GROWTH_LIMIT_MB)
    const stopping = performance.now()
    await service.destroy()
    service = undefined
    expect(performance.now() - stopping).toBeLessThan(5_000)
    console.log(`hostile flood: RSS grew ${growthMb.toFixed(0)} MB at peak; ${valid.size} valid moods stored`)
  })
})
