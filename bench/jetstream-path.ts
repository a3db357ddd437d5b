/**
 * Jetstream path throughput: how fast events get from a WebSocket to the point where they
 * would be written to MongoDB, against a bare `ws` + `JSON.parse` loop and @skyware/jetstream.
 *
 *   bash scripts/with-node.sh node bench/jetstream-path.ts [--events 200000] [--rounds 5] [--server raw|ws]
 *
 * A worker thread serves N pre-built Jetstream v1 commit-create frames on 127.0.0.1 to every
 * connection (query parameters ignored), as fast as the socket drains, then closes. Each
 * contender connects, counts all N events and stops. The server runs on its own thread so it
 * does not share the client's event loop; by default it writes pre-framed WebSocket bytes
 * (`--server raw`, near-zero cost per event), `--server ws` uses a `ws` WebSocketServer.
 */
import { createHash } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { Jetstream } from '@skyware/jetstream'
import WebSocket, { WebSocketServer } from 'ws'
import { batches } from '../src/ingest/batcher.ts'
import { commitToOps } from '../src/sync/records.ts'
import type { IngestEvent } from '../src/ingest/events.ts'
import { Indexer } from '../src/ingest/indexer.ts'
import { JetstreamSource } from '../src/ingest/jetstream.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import type { MoodOp } from '../src/store/records.ts'
import type { Store } from '../src/store/store.ts'
import { fakeCommits, formatRate, formatRatio, log, machineNote, option, pairedRatio, rounds, summarise, table, verdict, type Contender, type Sample } from './lib-table.ts'

type ServerMode = 'raw' | 'ws'

interface ServerData {
  events: number
  mode: ServerMode
}

interface ServerReady {
  port: number
  bytes: number
  meanFrameBytes: number
}

// ---------------------------------------------------------------------------------------------
// The frames (deterministic, so every run serves the same bytes)

export function buildFrames(count: number): string[] {
  return fakeCommits(count).map((c) =>
    JSON.stringify({
      did: c.did,
      time_us: c.timeUs,
      kind: 'commit',
      commit: {
        rev: c.rev,
        operation: 'create',
        collection: MOOD_NSID,
        rkey: c.rkey,
        record: { $type: MOOD_NSID, mood: c.mood, when: c.when },
        cid: c.cid,
      },
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// The server (worker thread)

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Close frame, status 1000, unmasked (server to client). */
const CLOSE_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xe8])

/** Server-to-client text frames, concatenated into chunks of about `chunkBytes`. */
function wireChunks(frames: readonly string[], chunkBytes = 256 * 1024): Buffer[] {
  const chunks: Buffer[] = []
  let parts: Buffer[] = []
  let size = 0
  for (const frame of frames) {
    const payload = Buffer.from(frame, 'utf8')
    const n = payload.length
    const header = n < 126 ? Buffer.from([0x81, n]) : n < 65536 ? Buffer.from([0x81, 126, n >> 8, n & 0xff]) : Buffer.concat([Buffer.from([0x81, 127]), bigEndian64(n)])
    parts.push(header, payload)
    size += header.length + n
    if (size >= chunkBytes) {
      chunks.push(Buffer.concat(parts, size))
      parts = []
      size = 0
    }
  }
  if (size > 0) chunks.push(Buffer.concat(parts, size))
  return chunks
}

function bigEndian64(n: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

async function serve(data: ServerData): Promise<void> {
  const frames = buildFrames(data.events)
  const bytes = frames.reduce((sum, f) => sum + Buffer.byteLength(f), 0)
  const server = createServer((_req, res) => {
    res.writeHead(426).end('WebSocket only\n')
  })

  if (data.mode === 'raw') {
    const chunks = wireChunks(frames)
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      let stopped = false
      socket.on('error', () => {})
      // Clients send nothing but their close frame: stop writing once anything arrives.
      socket.on('data', () => {
        if (stopped) return
        stopped = true
        socket.end(CLOSE_FRAME)
      })
      const key = req.headers['sec-websocket-key']
      if (typeof key !== 'string') {
        socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')
        return
      }
      const accept = createHash('sha1').update(key + WS_GUID).digest('base64')
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      let i = 0
      const pump = () => {
        while (i < chunks.length) {
          if (stopped || socket.destroyed) return
          // Backpressure: stop when the socket's buffer is full, go on when it drains.
          if (!socket.write(chunks[i++]!)) {
            socket.once('drain', pump)
            return
          }
        }
        stopped = true
        socket.end(CLOSE_FRAME)
      }
      pump()
    })
  } else {
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('error', () => {})
        let i = 0
        const pump = () => {
          while (i < frames.length) {
            if (ws.readyState !== WebSocket.OPEN) return
            if (ws.bufferedAmount > 4 * 1024 * 1024) {
              // Backpressure: the callback of this send fires once it is written out.
              ws.send(frames[i++]!, pump)
              return
            }
            ws.send(frames[i++]!)
          }
          ws.close(1000)
        }
        pump()
      })
    })
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const ready: ServerReady = { port: (server.address() as AddressInfo).port, bytes, meanFrameBytes: bytes / frames.length }
  parentPort!.postMessage(ready)
  // The parent terminates this thread when it is done.
}

/** Starts the frame server on its own thread; every connection gets all `events` frames. */
export async function startServer(events: number, mode: ServerMode = 'raw'): Promise<{ url: string; ready: ServerReady; stop: () => Promise<void> }> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { events, mode } satisfies ServerData })
  const ready = await new Promise<ServerReady>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`server thread exited (${code})`)))
  })
  return { url: `ws://127.0.0.1:${ready.port}/subscribe`, ready, stop: async () => void (await worker.terminate()) }
}

// ---------------------------------------------------------------------------------------------
// The contenders (main thread)

function timed(events: number, run: (done: () => void) => Promise<void>): Promise<Sample> {
  return new Promise<Sample>((resolve, reject) => {
    const started = performance.now()
    let ms = 0
    run(() => (ms = performance.now() - started)).then(() => resolve({ events, ms }), reject)
  })
}

/** (0) `ws` client counting frames, no parsing: the ceiling of the wire and the server. */
function wireCeiling(url: string, n: number): Promise<Sample> {
  return timed(n, (done) => {
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url)
      let count = 0
      ws.on('message', () => {
        if (++count === n) {
          done()
          ws.terminate()
          resolve()
        }
      })
      ws.on('error', reject)
      ws.on('close', () => (count < n ? reject(new Error(`closed after ${count} of ${n} events`)) : undefined))
    })
  })
}

/** (a) Baseline: `ws` client, `JSON.parse` of every frame, count the commits. */
function bareWs(url: string, n: number): Promise<Sample> {
  return timed(n, (done) => {
    return new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(url)
      let count = 0
      ws.on('message', (data: Buffer) => {
        const event = JSON.parse(data.toString('utf8')) as { kind?: string }
        if (event.kind === 'commit' && ++count === n) {
          done()
          ws.terminate()
          resolve()
        }
      })
      ws.on('error', reject)
      ws.on('close', () => (count < n ? reject(new Error(`closed after ${count} of ${n} events`)) : undefined))
    })
  })
}

/** The indexer's validation step (Indexer.#apply without MongoDB): the same commitToOps. */
function validate(batch: readonly IngestEvent[], ops: MoodOp[]): number {
  let rejected = 0
  for (const event of batch) {
    if (event.kind === 'invalid') rejected++
    if (event.kind !== 'commit') continue
    const checked = commitToOps(event, null, 'bench')
    ops.push(...checked.ops)
    rejected += checked.rejected.length
  }
  return rejected
}

/** Ours, the source alone: JetstreamSource.events (websocketFeed + parseJetstreamEvent). */
async function oursSource(url: string, n: number): Promise<Sample> {
  const ac = new AbortController()
  const source = new JetstreamSource({ url })
  return timed(n, async (done) => {
    let count = 0
    for await (const event of source.events(ac.signal)) {
      if (event.kind !== 'commit') throw new Error(`unexpected ${event.kind} event`)
      if (++count === n) {
        done()
        ac.abort()
        break
      }
    }
    if (source.stats.reconnects > 0) throw new Error('the source reconnected: events were counted twice')
  })
}

/** (b) Ours: JetstreamSource.events -> batches() -> validation -> no-op sink. */
async function oursPipeline(url: string, n: number): Promise<Sample> {
  const ac = new AbortController()
  const source = new JetstreamSource({ url })
  let sunk = 0
  const sink = (ops: MoodOp[]) => {
    sunk += ops.length
  }
  return timed(n, async (done) => {
    let rejected = 0
    // The indexer's defaults: maxBatch 1000, highWater 5000.
    for await (const batch of batches(source.events(ac.signal), { maxSize: 1000, highWater: 5000 })) {
      const ops: MoodOp[] = []
      rejected += validate(batch, ops)
      sink(ops)
      if (sunk + rejected >= n) {
        done()
        ac.abort()
        break
      }
    }
    if (rejected > 0) throw new Error(`${rejected} events were rejected: the frames are not what the benchmark means to send`)
    if (source.stats.reconnects > 0) throw new Error('the source reconnected: events were counted twice')
  })
}

/** Ours, all of it but MongoDB: the real Indexer (metrics, user lookup cache) on a stub store. */
async function oursIndexer(url: string, n: number): Promise<Sample> {
  const ac = new AbortController()
  const source = new JetstreamSource({ url })
  let applied = 0
  let quarantined = 0
  let done: () => void = () => {}
  const stub = {
    db: { collection: () => ({ find: () => ({ toArray: async () => [] }) }) },
    moods: {
      apply: async (ops: readonly MoodOp[]) => {
        applied += ops.length
        if (applied >= n) {
          done()
          ac.abort()
        }
        return { inserted: ops.length, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0 }
      },
    },
    cursors: { get: async () => undefined, save: async () => {} },
    quarantine: {
      add: async (entries: readonly unknown[]) => {
        quarantined += entries.length
      },
    },
    gaps: { record: async () => 0 },
  }
  const indexer = new Indexer({ store: stub as unknown as Store, source, cursorSaveIntervalMs: 1000 })
  return timed(n, async (mark) => {
    done = mark
    await indexer.run(ac.signal)
    if (quarantined > 0) throw new Error(`${quarantined} events were quarantined`)
    if (applied < n) throw new Error(`the indexer stopped after ${applied} of ${n} events`)
    if (source.stats.reconnects > 0) throw new Error('the source reconnected: events were counted twice')
  })
}

/** (c) @skyware/jetstream with an onCreate handler; `impl` is its WebSocket (default: Node's). */
function skyware(url: string, n: number, impl?: typeof WebSocket): Promise<Sample> {
  return timed(n, (done) => {
    return new Promise<void>((resolve, reject) => {
      const jetstream = new Jetstream({ endpoint: url, wantedCollections: [MOOD_NSID], ...(impl ? { ws: impl } : {}) })
      let count = 0
      jetstream.onCreate(MOOD_NSID, () => {
        if (++count === n) {
          done()
          jetstream.close()
          resolve()
        }
      })
      jetstream.on('error', (err: Error) => reject(err))
      jetstream.on('close', () => (count < n ? reject(new Error(`closed after ${count} of ${n} events`)) : undefined))
      jetstream.start()
    })
  })
}

// ---------------------------------------------------------------------------------------------

const NAMES = {
  wire: 'ws client, count frames only (wire ceiling)',
  bare: '(a) bare: ws + JSON.parse',
  source: 'ours: JetstreamSource.events only',
  ours: '(b) ours: source -> batches -> parseMood -> no-op',
  indexer: 'ours: Indexer.run, stub store (no MongoDB)',
  skyware: '(c) @skyware/jetstream (Node WebSocket)',
  skywareWs: '@skyware/jetstream (ws)',
} as const

async function main(): Promise<void> {
  const n = option('events', 'BENCH_EVENTS', 200_000)
  const roundCount = option('rounds', 'BENCH_ROUNDS', 5)
  const modeArg = process.argv.find((a) => a.startsWith('--server='))?.slice('--server='.length) ?? process.env.BENCH_SERVER ?? 'raw'
  if (modeArg !== 'raw' && modeArg !== 'ws') throw new Error(`--server must be raw or ws (got ${modeArg})`)
  const mode: ServerMode = modeArg

  log(`building ${n.toLocaleString('en-US')} frames in the server thread (${mode})…`)
  const server = await startServer(n, mode)
  const { url, ready } = server
  log(`serving on ${url}: ${(ready.bytes / 2 ** 20).toFixed(1)} MiB, ${ready.meanFrameBytes.toFixed(0)} bytes per frame`)

  // Warm-up: a quarter of the events per contender (the JIT settles well before that).
  const w = Math.max(1, n >> 2)
  const all: (Contender & { key: keyof typeof NAMES })[] = [
    { key: 'wire', name: NAMES.wire, run: () => wireCeiling(url, n), warm: () => wireCeiling(url, w) },
    { key: 'bare', name: NAMES.bare, run: () => bareWs(url, n), warm: () => bareWs(url, w) },
    { key: 'source', name: NAMES.source, run: () => oursSource(url, n), warm: () => oursSource(url, w) },
    { key: 'ours', name: NAMES.ours, run: () => oursPipeline(url, n), warm: () => oursPipeline(url, w) },
    { key: 'indexer', name: NAMES.indexer, run: () => oursIndexer(url, n), warm: () => oursIndexer(url, w) },
    { key: 'skyware', name: NAMES.skyware, run: () => skyware(url, n), warm: () => skyware(url, w) },
    { key: 'skywareWs', name: NAMES.skywareWs, run: () => skyware(url, n, WebSocket), warm: () => skyware(url, w, WebSocket) },
  ]
  // --only=ours,indexer runs a subset (for profiling with node --cpu-prof); the summary needs all.
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',')
  const contenders = only ? all.filter((c) => only.includes(c.key)) : all
  const started = performance.now()
  const results = await rounds(contenders, {
    rounds: roundCount,
    warmup: true,
    onSample: (name, round, s) => log(`  round ${round + 1}: ${name.padEnd(52)} ${formatRate((s.events / s.ms) * 1000).padStart(10)} events/s`),
  })
  const summary = summarise(results)
  if (only) {
    const rows = contenders.map((c) => [c.name, formatRate(summary.get(c.name)!.median)])
    process.stdout.write(`${table(['contender', 'events/s (median)'], rows)}\n`)
    await server.stop()
    return
  }
  const rows = contenders.map((c) => {
    const s = summary.get(c.name)!
    return [c.name, formatRate(s.median), `${formatRate(s.min)}–${formatRate(s.max)}`, formatRatio(pairedRatio(results, c.name, NAMES.bare))]
  })

  const oursBare = pairedRatio(results, NAMES.ours, NAMES.bare)
  const oursSky = pairedRatio(results, NAMES.ours, NAMES.skyware)
  const oursSkyWs = pairedRatio(results, NAMES.ours, NAMES.skywareWs)
  const indexerBare = pairedRatio(results, NAMES.indexer, NAMES.bare)
  const indexerSky = pairedRatio(results, NAMES.indexer, NAMES.skyware)

  const out = [
    `Jetstream path: ${n.toLocaleString('en-US')} commit-create events per run, ${roundCount} rounds (order rotated), median; server: ${mode}, ${ready.meanFrameBytes.toFixed(0)} B/frame`,
    `machine: ${machineNote()}`,
    '',
    table(['contender', 'events/s (median)', 'min–max', 'vs bare'], rows),
    '',
    table(
      ['ratio (median of per-round ratios)', 'value', 'target'],
      [
        ['(b) ours / (a) bare', formatRatio(oursBare), verdict(oursBare, 0.9)],
        ['(b) ours / (c) skyware', formatRatio(oursSky), verdict(oursSky, 1.1)],
        ['(b) ours / skyware (ws)', formatRatio(oursSkyWs), '—'],
        ['Indexer stub / bare', formatRatio(indexerBare), '—'],
        ['Indexer stub / skyware', formatRatio(indexerSky), '—'],
      ],
    ),
    '',
    `total ${((performance.now() - started) / 1000).toFixed(0)} s`,
  ]
  process.stdout.write(`${out.join('\n')}\n`)
  await server.stop()
}

if (!isMainThread) {
  await serve(workerData as ServerData)
} else if (import.meta.filename === realpathSync(process.argv[1] ?? '')) {
  await main()
  // @skyware/jetstream's socket may still hold a reconnect timer after close(); nothing is pending.
  process.exit(0)
}
