import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer, type RawData } from 'ws'

export type JetstreamCommit =
  | {
      rev: string
      operation: 'create' | 'update'
      collection: string
      rkey: string
      record: Record<string, unknown>
      cid: string
    }
  | {
      rev: string
      operation: 'delete'
      collection: string
      rkey: string
    }

export interface JetstreamCommitEvent {
  did: string
  time_us: number
  kind: 'commit'
  commit: JetstreamCommit
}

export interface JetstreamIdentityEvent {
  did: string
  time_us: number
  kind: 'identity'
  identity: { did: string; handle?: string; seq: number; time: string }
}

export interface JetstreamAccountEvent {
  did: string
  time_us: number
  kind: 'account'
  account: { active: boolean; did: string; seq: number; time: string; status?: string }
}

export type JetstreamEvent = JetstreamCommitEvent | JetstreamIdentityEvent | JetstreamAccountEvent

/** An event as handed to `publish`: the server stamps `time_us` itself, as Jetstream does. */
export type JetstreamEventInput = JetstreamEvent extends infer E ? (E extends unknown ? Omit<E, 'time_us'> : never) : never

export interface JetstreamServerOptions {
  port?: number
  /** How far back (µs before the newest event) the log reaches; unlimited by default. */
  windowUs?: number
}

interface Logged {
  event: JetstreamEvent
  /** Serialised once: every subscriber gets the same bytes. */
  text: string
}

interface Subscriber {
  ws: WebSocket
  collections: ((collection: string) => boolean) | null
  dids: Set<string> | null
  /** Replay done: `publish` sends to it directly. */
  live: boolean
}

/** Events sent per turn of the event loop while replaying, so publishes interleave with replay. */
const REPLAY_CHUNK = 64

/**
 * A HAND-WRITTEN STAND-IN for Jetstream v1's `/subscribe`, kept only for the faults the real
 * Jetstream (rig/jetstream.ts) cannot be made to produce: hostile and malformed frames, and a
 * cursor older than the replay window clamped without a word. Everything else is tested
 * against the real servers. An in-memory event log on 127.0.0.1 with `time_us` cursors,
 * replay then live tail, the `wantedCollections`/`wantedDids` filters and `options_update`.
 */

export class JetstreamServer {
  readonly #http: Server
  readonly #wss: WebSocketServer
  readonly #windowUs: number
  readonly #log: Logged[] = []
  readonly #subs = new Set<Subscriber>()
  #lastTimeUs = 0
  #connectCount = 0
  #lastCursorParam: string | null = null
  #optionsUpdates = 0
  #stopped = false

  private constructor(http: Server, wss: WebSocketServer, windowUs: number) {
    this.#http = http
    this.#wss = wss
    this.#windowUs = windowUs
  }

  static async start(opts: JetstreamServerOptions = {}): Promise<JetstreamServer> {
    const http = createServer((_req, res) => {
      res.writeHead(404).end()
    })
    const wss = new WebSocketServer({ noServer: true })
    const server = new JetstreamServer(http, wss, opts.windowUs ?? Number.POSITIVE_INFINITY)
    http.on('upgrade', (req, socket, head) => server.#upgrade(req, socket, head))
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(opts.port ?? 0, '127.0.0.1', () => {
        http.off('error', reject)
        resolve()
      })
    })
    return server
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.#http.address() as AddressInfo).port}/subscribe`
  }

  /** Open client sockets. */
  get connections(): number {
    return this.#subs.size
  }

  /** Connections accepted since start. */
  get connectCount(): number {
    return this.#connectCount
  }

  /** The raw `cursor` query parameter of the latest connection, null when it had none. */
  get lastCursorParam(): string | null {
    return this.#lastCursorParam
  }

  /** `options_update` messages applied so far: a sync point for tests, Jetstream sends no ack. */
  get optionsUpdates(): number {
    return this.#optionsUpdates
  }

  /** The retained log, oldest first. */
  get events(): JetstreamEvent[] {
    return this.#log.map((l) => l.event)
  }

  /** Appends to the log and sends to matching live subscribers; returns the assigned `time_us`. */
  publish(input: JetstreamEventInput): number {
    const time_us = Math.max(Date.now() * 1000, this.#lastTimeUs + 1)
    this.#lastTimeUs = time_us
    // Jetstream's key order: did, time_us, kind, then the payload.
    const { did, kind, ...payload } = input
    const event = { did, time_us, kind, ...payload } as JetstreamEvent
    const logged = { event, text: JSON.stringify(event) }
    this.#log.push(logged)
    const cutoff = time_us - this.#windowUs
    let drop = 0
    while (drop < this.#log.length && this.#log[drop]!.event.time_us < cutoff) drop++
    if (drop > 0) this.#log.splice(0, drop)
    for (const sub of this.#subs) {
      if (sub.live && matches(sub, event)) send(sub.ws, logged.text)
    }
    return time_us
  }

  /** Sends a text frame to every client as is, without logging it: for malformed-input tests. */
  sendRaw(frame: string | Uint8Array): void {
    for (const sub of this.#subs) send(sub.ws, frame)
  }

  /** Kills every client socket without a close handshake, as a crashing server would. */
  dropConnections(): void {
    for (const sub of this.#subs) sub.ws.terminate()
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.dropConnections()
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()))
    this.#http.closeAllConnections()
    await new Promise<void>((resolve) => this.#http.close(() => resolve()))
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const reject = (status: number, message: string) => {
      socket.end(`HTTP/1.1 ${status} ${message}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\nConnection: close\r\n\r\n${message}`)
    }
    if (this.#stopped) return reject(503, 'stopping')
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (url.pathname !== '/subscribe') return reject(404, 'not found')
    const cursorParam = url.searchParams.get('cursor')
    let cursor: number | undefined
    if (cursorParam !== null && cursorParam !== '') {
      if (!/^-?\d+$/.test(cursorParam)) return reject(400, 'invalid cursor')
      cursor = Number(cursorParam)
    }
    const requireHello = url.searchParams.get('requireHello') === 'true'
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#connectCount++
      this.#lastCursorParam = cursorParam
      const sub: Subscriber = {
        ws,
        collections: collectionFilter(url.searchParams.getAll('wantedCollections')),
        dids: didFilter(url.searchParams.getAll('wantedDids')),
        live: false,
      }
      this.#subs.add(sub)
      let started = false
      const begin = () => {
        if (started) return
        started = true
        if (cursor === undefined) sub.live = true
        else void this.#replay(sub, cursor)
      }
      ws.on('message', (data: RawData, isBinary: boolean) => {
        if (isBinary) return
        if (this.#optionsUpdate(sub, rawText(data))) begin()
      })
      ws.on('error', () => {})
      ws.on('close', () => {
        this.#subs.delete(sub)
      })
      // Jetstream's requireHello holds all events until the first options_update.
      if (!requireHello) begin()
    })
  }

  /**
   * Sends logged events from `cursor` on, a chunk per event-loop turn; publishes that land
   * meanwhile go to the log only, and the loop picks them up by `time_us`. It turns live only
   * once nothing newer is left, in the same synchronous step, so nothing is lost or sent twice.
   */
  async #replay(sub: Subscriber, cursor: number): Promise<void> {
    let sentUpTo = cursor - 1
    for (;;) {
      if (sub.ws.readyState !== WebSocket.OPEN) return
      let i = this.#firstAfter(sentUpTo)
      if (i >= this.#log.length) {
        sub.live = true
        return
      }
      const end = Math.min(i + REPLAY_CHUNK, this.#log.length)
      for (; i < end; i++) {
        const logged = this.#log[i]!
        if (matches(sub, logged.event)) send(sub.ws, logged.text)
        sentUpTo = logged.event.time_us
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** Index of the first logged event with `time_us` > t (the log is sorted by it). */
  #firstAfter(t: number): number {
    let lo = 0
    let hi = this.#log.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.#log[mid]!.event.time_us > t) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  /** Applies `{"type":"options_update","payload":{…}}`; like Jetstream, it replaces both filters. */
  #optionsUpdate(sub: Subscriber, text: string): boolean {
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch {
      return false
    }
    if (!isObject(msg) || msg.type !== 'options_update' || !isObject(msg.payload)) return false
    const { wantedCollections, wantedDids } = msg.payload
    sub.collections = collectionFilter(stringArray(wantedCollections))
    sub.dids = didFilter(stringArray(wantedDids))
    this.#optionsUpdates++
    return true
  }

}

function matches(sub: Subscriber, event: JetstreamEvent): boolean {
  if (sub.dids && !sub.dids.has(event.did)) return false
  // Jetstream sends identity and account events whatever the collections asked for.
  if (event.kind === 'commit' && sub.collections && !sub.collections(event.commit.collection)) return false
  return true
}

function collectionFilter(wanted: string[]): ((collection: string) => boolean) | null {
  if (wanted.length === 0) return null
  const exact = new Set<string>()
  const prefixes: string[] = []
  for (const w of wanted) {
    if (w.endsWith('.*')) prefixes.push(w.slice(0, -1))
    else exact.add(w)
  }
  return (collection) => exact.has(collection) || prefixes.some((p) => collection.startsWith(p))
}

function didFilter(wanted: string[]): Set<string> | null {
  return wanted.length === 0 ? null : new Set(wanted)
}

function send(ws: WebSocket, text: string | Uint8Array): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(text)
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8')
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}
