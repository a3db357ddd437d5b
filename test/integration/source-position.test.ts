import { describe, expect, it } from 'vitest'
import { createIdResolver } from '../../src/atproto/identity.ts'
import type { IngestEvent, SavedPosition } from '../../src/ingest/events.ts'
import { FirehoseSource } from '../../src/ingest/firehose.ts'
import { JetstreamSource } from '../../src/ingest/jetstream.ts'
import { JetstreamServer } from '../../rig/jetstream-server.ts'
import { waitFor } from '../../rig/wait.ts'

/** The first event a source yields from `from`, and what it asked the server for. */
async function firstOf(source: { events(signal: AbortSignal, from?: SavedPosition): AsyncIterable<IngestEvent[]> }, from: SavedPosition, server?: JetstreamServer, poke?: () => void) {
  const abort = new AbortController()
  const events: IngestEvent[] = []
  const before = server?.connections ?? 0
  const reading = (async () => {
    for await (const batch of source.events(abort.signal, from)) events.push(...batch)
  })()
  if (server) await waitFor(() => server.connections > before, { what: 'the connection' })
  poke?.()
  if (!server || poke) await waitFor(() => events.length > 0, { what: 'the first event' })
  abort.abort()
  await reading
  return { events, cursor: server?.lastCursorParam ?? null }
}

// What a saved position from another instance means. The stand-in server (rig/jetstream-server.ts)
// is used because it records the cursor a client asked for, which a real server does not tell;
// each case gets a server of its own.
describe('resuming on another instance', () => {
  const REWIND_US = 10_000_000
  const withServer = async <T>(work: (server: JetstreamServer) => Promise<T>): Promise<T> => {
    const server = await JetstreamServer.start()
    try {
      return await work(server)
    } finally {
      await server.stop()
    }
  }

  it('the same Jetstream instance resumes at the saved cursor', () =>
    withServer(async (server) => {
      const cursor = Date.now() * 1000 - 5_000_000
      const { cursor: asked } = await firstOf(new JetstreamSource({ url: server.url }), { cursor, instance: server.url }, server)
      expect(asked).toBe(String(cursor))
    }))

  it('another Jetstream instance resumes from the saved time, rewound', () =>
    withServer(async (server) => {
      const timeUs = Date.now() * 1000 - 5_000_000
      const { cursor } = await firstOf(new JetstreamSource({ url: server.url }), { cursor: timeUs, instance: 'wss://jetstream-a.example/subscribe' }, server)
      expect(cursor).toBe(String(timeUs - REWIND_US))
    }))

  it('a v2 sequence from another instance is translated through the time saved beside it', () =>
    withServer(async (server) => {
      const timeUs = Date.now() * 1000 - 5_000_000
      const { cursor } = await firstOf(new JetstreamSource({ url: server.url }), { cursor: 4_242, timeUs, instance: 'wss://jetstream-v2-a.example/subscribe' }, server)
      expect(cursor).toBe(String(timeUs - REWIND_US))
    }))

  it('another instance with a sequence cursor and no time: a gap, and the live tail', () =>
    withServer(async (server) => {
      const did = 'did:plc:positiontest0000000000000'
      const poke = () => server.publish({ did, kind: 'identity', identity: { did, handle: 'p.test', seq: 1, time: new Date().toISOString() } })
      const { events, cursor } = await firstOf(new JetstreamSource({ url: server.url }), { cursor: 4_242, instance: 'wss://jetstream-v2-a.example/subscribe' }, server, poke)
      expect(cursor).toBeNull()
      expect(events[0]).toMatchObject({ kind: 'gap', requested: 4_242, reason: expect.stringMatching(/no time to resume by/) })
    }))

  it('another relay: firehose sequence numbers do not carry over, so a gap comes first', async () => {
    const source = new FirehoseSource({ url: 'ws://127.0.0.1:9/xrpc/com.atproto.sync.subscribeRepos', idResolver: createIdResolver('http://127.0.0.1:9') })
    const { events } = await firstOf(source, { cursor: 77, instance: 'wss://relay-a.example/xrpc/com.atproto.sync.subscribeRepos' })
    expect(events[0]).toMatchObject({ kind: 'gap', requested: 77, reason: expect.stringMatching(/sequence numbers do not carry over/) })
  })
})
