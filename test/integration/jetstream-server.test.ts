import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { JetstreamServer, type JetstreamAccountEvent, type JetstreamEvent } from '../../rig/jetstream-server.ts'
import { waitFor } from '../../rig/wait.ts'

const MOOD = 'computer.aesthetic.mood'
const POST = 'app.bsky.feed.post'
const ALICE = 'did:plc:alice'
const BOB = 'did:plc:bob'
const SENTINEL = '{"sentinel":true}'

/** A plain `ws` client that keeps every frame it gets, parsed. */
class Client {
  readonly ws: WebSocket
  readonly frames: unknown[] = []
  closed = false

  private constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data) => this.frames.push(JSON.parse(data.toString())))
    ws.on('close', () => (this.closed = true))
  }

  static async connect(url: string): Promise<Client> {
    const ws = new WebSocket(url)
    const client = new Client(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return client
  }

  get events(): JetstreamEvent[] {
    return this.frames.filter((f): f is JetstreamEvent => typeof f === 'object' && f !== null && 'kind' in f)
  }

  /** Everything before the first sentinel; by then the server has sent all it was going to. */
  async untilSentinel(): Promise<JetstreamEvent[]> {
    const at = await waitFor(() => {
      const i = this.frames.findIndex((f) => JSON.stringify(f) === SENTINEL)
      return i >= 0 ? i : undefined
    }, { timeoutMs: 5000, what: 'the sentinel frame' })
    return this.frames.slice(0, at) as JetstreamEvent[]
  }

  async close(): Promise<void> {
    if (this.closed) return
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close()
    })
  }
}

const url = (base: string, params: [string, string | number][]) => {
  const u = new URL(base)
  for (const [k, v] of params) u.searchParams.append(k, String(v))
  return u.toString()
}

const mood = (did: string, rkey: string) =>
  ({ did, kind: 'commit', commit: { rev: `rev-${rkey}`, operation: 'create', collection: MOOD, rkey, record: { $type: MOOD, ref: `client:${rkey}`, mood: rkey, when: '2025-01-01T00:00:00.000Z' }, cid: `bafy${rkey}` } }) as const
const post = (did: string, rkey: string) =>
  ({ did, kind: 'commit', commit: { rev: `rev-${rkey}`, operation: 'delete', collection: POST, rkey } }) as const
const rkeys = (events: JetstreamEvent[]) => events.map((e) => (e.kind === 'commit' ? e.commit.rkey : e.kind))

describe('JetstreamServer (in-memory)', () => {
  let server: JetstreamServer
  const clients: Client[] = []
  const connect = async (u: string) => {
    const c = await Client.connect(u)
    clients.push(c)
    return c
  }

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await server?.stop()
  })

  it('stamps increasing time_us and filters by wantedCollections and wantedDids', async () => {
    server = await JetstreamServer.start()
    expect(server.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/subscribe$/)
    const moods = await connect(url(server.url, [['wantedCollections', MOOD]]))
    const aliceBsky = await connect(url(server.url, [['wantedCollections', 'app.bsky.*'], ['wantedDids', ALICE]]))
    const both = await connect(url(server.url, [['wantedDids', ALICE], ['wantedDids', BOB]]))
    const all = await connect(server.url)
    await waitFor(() => server.connections === 4, { what: 'four connections' })

    const times = [
      server.publish(mood(ALICE, 'm1')),
      server.publish(post(ALICE, 'p1')),
      server.publish(post(BOB, 'p2')),
      server.publish({ did: BOB, kind: 'identity', identity: { did: BOB, handle: 'bob.test', seq: 1, time: '2025-01-01T00:00:00.000Z' } }),
      server.publish({ did: ALICE, kind: 'account', account: { active: false, did: ALICE, seq: 2, time: '2025-01-01T00:00:00.000Z', status: 'deactivated' } }),
      server.publish(mood('did:plc:carol', 'm2')),
    ]
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThan(times[i - 1]!)
    server.sendRaw(SENTINEL)

    const got = await all.untilSentinel()
    expect(got.map((e) => e.time_us)).toEqual(times)
    expect(got[0]).toEqual({ ...mood(ALICE, 'm1'), time_us: times[0] })
    expect(Object.keys(got[0]!)).toEqual(['did', 'time_us', 'kind', 'commit'])
    expect(rkeys(await moods.untilSentinel())).toEqual(['m1', 'identity', 'account', 'm2'])
    expect(rkeys(await aliceBsky.untilSentinel())).toEqual(['p1', 'account'])
    expect(rkeys(await both.untilSentinel())).toEqual(['m1', 'p1', 'p2', 'identity', 'account'])

    // options_update replaces both filters.
    moods.ws.send(JSON.stringify({ type: 'options_update', payload: { wantedCollections: [POST], wantedDids: [BOB] } }))
    await waitFor(() => server.optionsUpdates === 1, { what: 'the options update' })
    moods.frames.length = 0
    server.publish(post(ALICE, 'p3'))
    server.publish(post(BOB, 'p4'))
    server.publish(mood(BOB, 'm3'))
    server.sendRaw(SENTINEL)
    expect(rkeys(await moods.untilSentinel())).toEqual(['p4'])
  })

  it('replays from a cursor then goes live, with no gap or duplicate at the switch', async () => {
    server = await JetstreamServer.start()
    const times: number[] = []
    for (let i = 0; i < 2000; i++) times.push(server.publish(mood(i % 2 ? ALICE : BOB, `r${i}`)))
    const cursor = times[200]!
    const client = await connect(url(server.url, [['cursor', cursor], ['wantedCollections', MOOD]]))
    expect(server.lastCursorParam).toBe(String(cursor))
    // Publish while the replay (64 events a turn) is still going: it has ~28 turns to run.
    for (let i = 2000; i < 3000; i++) {
      times.push(server.publish(mood(i % 2 ? ALICE : BOB, `r${i}`)))
      if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    // A sentinel sent mid-replay would overtake it: first wait for the newest event.
    await waitFor(() => client.events.at(-1)?.time_us === times.at(-1), { what: 'the last event' })
    server.sendRaw(SENTINEL)
    const got = await client.untilSentinel()
    expect(got.map((e) => e.time_us)).toEqual(times.slice(200))

    // A dropped client resumes from its last time_us: that event again, then what it missed.
    const before = server.connectCount
    server.dropConnections()
    await waitFor(() => client.closed && server.connections === 0, { what: 'the drop' })
    const last = got.at(-1)!.time_us
    server.publish(mood(ALICE, 'after-drop'))
    const again = await connect(url(server.url, [['cursor', last]]))
    expect(server.connectCount).toBe(before + 1)
    expect(server.lastCursorParam).toBe(String(last))
    server.sendRaw(SENTINEL)
    // The sentinel may beat the replay: wait for the events themselves.
    await waitFor(() => again.events.length >= 2, { what: 'the resumed replay' })
    expect(rkeys(again.events)).toEqual(['r2999', 'after-drop'])
  })

  it('sends only live events for a future or absent cursor', async () => {
    server = await JetstreamServer.start()
    server.publish(mood(ALICE, 'old'))
    const future = await connect(url(server.url, [['cursor', Date.now() * 1000 + 3_600_000_000]]))
    const none = await connect(server.url)
    await waitFor(() => server.connections === 2, { what: 'two connections' })
    server.publish(mood(ALICE, 'new'))
    server.sendRaw(SENTINEL)
    expect(rkeys(await future.untilSentinel())).toEqual(['new'])
    expect(rkeys(await none.untilSentinel())).toEqual(['new'])
  })

  it('rejects a malformed cursor and unknown paths', async () => {
    server = await JetstreamServer.start()
    const status = (u: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(u)
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0)
          res.resume()
          ws.terminate()
        })
        ws.on('error', () => {})
      })
    expect(await status(`${server.url}?cursor=yesterday`)).toBe(400)
    expect(await status(server.url.replace('/subscribe', '/firehose'))).toBe(404)
  })

  it('clamps a cursor older than the replay window to the oldest retained event', async () => {
    const windowUs = 20_000
    server = await JetstreamServer.start({ windowUs })
    const a1 = server.publish(mood(ALICE, 'a1'))
    server.publish(mood(ALICE, 'a2'))
    await waitFor(() => Date.now() * 1000 > a1 + 2 * windowUs, { what: 'the window to pass', intervalMs: 5 })
    const b1 = server.publish(mood(ALICE, 'b1'))
    server.publish(mood(ALICE, 'b2'))
    expect(rkeys(server.events)).toEqual(['b1', 'b2'])

    for (const cursor of [a1, 1]) {
      const client = await connect(url(server.url, [['cursor', cursor]]))
      await waitFor(() => client.events.length >= 2, { what: 'the replay' })
      server.sendRaw(SENTINEL)
      const got = await client.untilSentinel()
      expect(rkeys(got)).toEqual(['b1', 'b2'])
      expect(got[0]!.time_us).toBe(b1)
    }
  })

  it('holds events until the first options_update with requireHello', async () => {
    server = await JetstreamServer.start()
    server.publish(mood(ALICE, 'x1'))
    const client = await connect(url(server.url, [['requireHello', 'true'], ['cursor', 1]]))
    await waitFor(() => server.connections === 1)
    server.sendRaw(SENTINEL)
    expect(await client.untilSentinel()).toEqual([])
    client.ws.send(JSON.stringify({ type: 'options_update', payload: { wantedCollections: [MOOD] } }))
    await waitFor(() => client.events.length === 1, { what: 'the replay after hello' })
    expect(rkeys(client.events)).toEqual(['x1'])
  })
})
