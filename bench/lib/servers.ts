/**
 * The bench library, part 2: what the benches run against. MongoDB (the URI given, else
 * MONGODB_URI, else the rig's server: mongo-java-server, or FerretDB with MOODSYNC_TEST_MONGO=ferretdb), one WebSocket frame server and a firehose tap.
 *
 * The frame server serves the same frames (text or binary) to every client that connects,
 * whatever its URL or cursor, as pre-framed WebSocket bytes in 256 KiB writes with TCP
 * backpressure: it costs next to nothing per frame, so the client is what is measured. It runs
 * here, on a worker thread (off the measuring thread) or in a child process (its memory out of
 * the RSS figures too); away from here it builds its frames itself from a FrameSpec.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { decodeAll } from '@atproto/lex-cbor'
import WebSocket from 'ws'
import { startMongoServer } from '../../rig/mongo-server.ts'
import { isMain } from './report.ts'

export interface Mongo {
  uri: string
  label: string
  stop: () => Promise<void>
}

/** A MongoDB-wire server for one bench run: `uri`, else MONGODB_URI, else one of the rig's own. */
export async function startMongo(uri = process.env.MONGODB_URI): Promise<Mongo> {
  if (uri) return { uri, label: process.env.MONGODB_URI === uri ? 'MongoDB at MONGODB_URI' : 'the MongoDB-wire server given', stop: async () => {} }
  const server = await startMongoServer()
  return { uri: server.uri, label: server.label, stop: () => server.stop() }
}

export type Frame = string | Uint8Array

/** Frames built where the server runs: `module`'s export `name`, called with `args` for each connection. */
export interface FrameSpec {
  module: string
  name: string
  args?: unknown
  /** Frame them once and send every client the same bytes (memory for speed). */
  cache?: boolean
}

export interface FrameServerOptions {
  where?: 'here' | 'thread' | 'process'
  /** The URL's path (`/subscribe`, `/xrpc/com.atproto.sync.subscribeRepos`). */
  path?: string
  /** Close after the last frame (default: keep the connection open, as Jetstream and relays do). */
  close?: boolean
  /** Send the frames this many times over on each connection (a long stream from a short capture). */
  repeat?: number
}

export interface FrameServer {
  url: string
  stop: () => Promise<void>
}

export async function startFrameServer(frames: readonly Frame[] | FrameSpec, opts: FrameServerOptions = {}): Promise<FrameServer> {
  const setup = { frames, close: opts.close ?? false, repeat: opts.repeat ?? 1 }
  const url = (port: number) => `ws://127.0.0.1:${port}${opts.path ?? '/'}`
  if ((opts.where ?? 'here') === 'here') {
    const server = await listen(setup)
    return { url: url(server.port), stop: server.stop }
  }
  if (opts.where === 'thread') {
    const worker = new Worker(new URL(import.meta.url), { workerData: { frameServer: setup } })
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`the frame server thread exited (${code})`)))
    })
    return { url: url(port), stop: async () => void (await worker.terminate()) }
  }
  if (!('module' in frames)) throw new Error('a frame server in another process builds its frames: pass a FrameSpec')
  // stdin stays open: the server exits when it closes, so it never outlives us.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), JSON.stringify(setup)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const match = /^FRAME_SERVER (\d+)/.exec(line)
      if (match) resolve(Number(match[1]))
    })
    child.once('exit', (code) => reject(new Error(`the frame server process exited (${code}) before it was ready`)))
  })
  return { url: url(port), stop: async () => void (child.stdin!.end(), await exited) }
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Close frame, status 1000, unmasked (server to client). */
const CLOSE = Buffer.from([0x88, 0x02, 0x03, 0xe8])

async function listen(setup: { frames: readonly Frame[] | FrameSpec; close: boolean; repeat: number }): Promise<{ port: number; stop: () => Promise<void> }> {
  const spec = 'module' in setup.frames ? setup.frames : undefined
  const make = spec ? ((await import(spec.module)) as Record<string, (args: unknown) => Iterable<Frame>>)[spec.name]! : () => setup.frames as readonly Frame[]
  let cached: Buffer[] | undefined
  const chunks = () => (spec && !spec.cache ? wire(make(spec.args)) : (cached ??= [...wire(make(spec?.args))]))
  const sockets = new Set<Socket>()
  const server = createServer((_req, res) => void res.writeHead(426).end('WebSocket only\n'))
  server.on('upgrade', (req, socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const key = req.headers['sec-websocket-key']
    if (typeof key !== 'string') return void socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
    let stopped = false
    // Clients send their close frame and, some, pings (masked, short): answer those, stop on close.
    socket.on('data', (data: Buffer) => {
      const opcode = data[0]! & 0x0f
      if (opcode === 0x8 && !stopped) socket.end(CLOSE)
      if (opcode === 0x8) stopped = true
      if (opcode === 0x9 && (data[1]! & 0x7f) < 126) {
        const length = data[1]! & 0x7f
        const payload = Buffer.from(data.subarray(6, 6 + length).map((b, i) => b ^ data[2 + (i % 4)]!))
        socket.write(Buffer.concat([Buffer.from([0x8a, length]), payload]))
      }
    })
    const it = (function* () {
      for (let i = 0; i < setup.repeat; i++) yield* chunks()
    })()
    const pump = () => {
      for (;;) {
        if (stopped || socket.destroyed) return
        const next = it.next()
        if (next.done) return void (setup.close && socket.end(CLOSE))
        if (!socket.write(next.value)) return void socket.once('drain', pump)
      }
    }
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const stop = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { port: (server.address() as AddressInfo).port, stop }
}

/** Server-to-client WebSocket frames (text for strings, binary for bytes), concatenated into ~256 KiB writes. */
function* wire(frames: Iterable<Frame>, chunkBytes = 256 * 1024): Generator<Buffer> {
  let parts: Buffer[] = []
  let size = 0
  for (const frame of frames) {
    const payload = typeof frame === 'string' ? Buffer.from(frame, 'utf8') : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
    const n = payload.length
    const head = Buffer.alloc(n < 126 ? 2 : n < 65536 ? 4 : 10)
    head[0] = typeof frame === 'string' ? 0x81 : 0x82
    if (n < 126) head[1] = n
    else if (n < 65536) (head[1] = 126), head.writeUInt16BE(n, 2)
    else (head[1] = 127), head.writeBigUInt64BE(BigInt(n), 2)
    parts.push(head, payload)
    size += head.length + n
    if (size >= chunkBytes) {
      yield Buffer.concat(parts, size)
      parts = []
      size = 0
    }
  }
  if (size > 0) yield Buffer.concat(parts, size)
}

if (!isMainThread && (workerData as { frameServer?: unknown } | null)?.frameServer) {
  parentPort!.postMessage((await listen((workerData as { frameServer: Parameters<typeof listen>[0] }).frameServer)).port)
} else if (isMain(import.meta)) {
  const { port } = await listen(JSON.parse(process.argv[2]!))
  process.stdout.write(`FRAME_SERVER ${port}\n`)
  process.stdin.on('close', () => process.exit(0)).resume()
}

// ---------------------------------------------------------------------------------------------

export interface TapFrame {
  t?: string
  seq?: number
  time?: string
  repo?: string
  ops?: { path?: string }[]
}

/** A bare subscriber to a subscribeRepos URL: each frame's header type and body, decoded, not verified. */
export function firehoseTap(url: string, onFrame: (frame: TapFrame, data: Buffer) => void): { opened: Promise<void>; close: () => void } {
  const ws = new WebSocket(url)
  ws.on('message', (data: Buffer) => {
    try {
      const [header, body] = [...decodeAll(data)] as [{ t?: string }, TapFrame]
      onFrame({ ...body, t: header?.t }, data)
    } catch {
      // Not a frame a bench cares about.
    }
  })
  const opened = new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  return { opened, close: () => ws.terminate() }
}
