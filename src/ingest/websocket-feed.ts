import WebSocket from 'ws'
import type { Logger } from '../logger.ts'
import { Backoff, sleep } from '../retry.ts'
import type { SourceStats } from './events.ts'

/** Public Jetstream and relays answer pings; 30 s notices a dead line well within a minute. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000

export interface Message {
  data: Buffer
  isBinary: boolean
  /** Sends on the connection this message came on; false when that one has closed. */
  reply(text: string): boolean
  /**
   * Set (to when it came, ms) on a message that is no frame but a pong that arrived with every
   * frame before it already consumed: the connection is alive and nothing is waiting.
   */
  heartbeat?: number
}

const NO_DATA = Buffer.alloc(0)

export interface FeedOptions {
  /** Recomputed for every connection, so a reconnect resumes from the latest cursor. */
  url: () => string
  signal: AbortSignal
  stats: SourceStats
  log: Logger
  backoff?: Backoff
  /** Messages buffered before the socket is paused until the consumer takes them (TCP backpressure, not memory). */
  highWater?: number
  /** A frame larger than this closes the connection; records are far smaller. */
  maxPayload?: number
  /** A connection that stays up this long resets the backoff. */
  stableAfterMs?: number
  /** Sent with every connection's upgrade request (Tap's Basic auth). */
  headers?: Record<string, string>
  /**
   * A connection that answers neither with a frame nor a pong for this long is dead (a
   * half-open TCP connection, a frozen upstream): it is dropped and opened again. Pings go
   * out at a third of it. Time we spend not reading (backpressure) does not count.
   */
  idleTimeoutMs?: number
  /** Yield heartbeat messages (see `Message.heartbeat`). */
  heartbeats?: boolean
}

/**
 * The messages of a WebSocket that reconnects forever (until `signal` aborts), with backoff
 * and jitter, in arrays: everything that arrived while the consumer was busy comes at once.
 * Reading pauses while the consumer is behind, so memory stays bounded. A new connection is
 * opened only after every message of the old one has been consumed, so the caller's cursor
 * (read through `url()`) is exact.
 */
export async function* websocketFeed(opts: FeedOptions): AsyncGenerator<Message[]> {
  const { signal, stats, log } = opts
  const backoff = opts.backoff ?? new Backoff()
  const highWater = opts.highWater ?? 1000
  let first = true

  while (!signal.aborted) {
    if (!first) {
      const delay = backoff.next()
      log.info({ delayMs: Math.round(delay), attempt: backoff.attempt }, 'reconnecting')
      await sleep(delay, signal)
      if (signal.aborted) break
      stats.reconnects++
    }
    first = false

    let queue: Message[] = []
    let closed = false
    let wake: (() => void) | undefined
    const notify = () => {
      wake?.()
      wake = undefined
    }
    const url = opts.url()
    const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
    const socket = new WebSocket(url, { maxPayload: opts.maxPayload ?? 8 * 1024 * 1024, headers: opts.headers, handshakeTimeout: idleMs })
    let lastHeard = Date.now()
    let paused = false
    const watchdog = setInterval(() => {
      if (paused || socket.readyState !== WebSocket.OPEN) {
        lastHeard = Date.now()
        return
      }
      if (Date.now() - lastHeard > idleMs) {
        stats.lastDropReason = `no frame or pong for ${idleMs / 1000} s`
        log.warn({ idleTimeoutMs: idleMs }, 'connection silent past the idle timeout (no frame, no pong): dropping it')
        socket.terminate()
        return
      }
      socket.ping()
    }, Math.max(20, Math.floor(idleMs / 3)))
    socket.on('pong', () => {
      lastHeard = Date.now()
      // Only with nothing queued: a heartbeat must never overtake a frame it would vouch for.
      if (opts.heartbeats && queue.length === 0 && !paused) {
        queue.push({ data: NO_DATA, isBinary: false, reply, heartbeat: lastHeard })
        notify()
      }
    })
    const reply = (text: string): boolean => {
      if (socket.readyState !== WebSocket.OPEN) return false
      socket.send(text)
      return true
    }
    let stableTimer: NodeJS.Timeout | undefined
    socket.on('open', () => {
      stats.connected = true
      stats.disconnectedSince = undefined
      log.info({ url: url.replace(/([?&]cursor=)\d+/, '$1…') }, 'connected')
      stableTimer = setTimeout(() => backoff.reset(), opts.stableAfterMs ?? 10_000)
    })
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      lastHeard = Date.now()
      stats.framesReceived++
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
      queue.push({ data: buf, isBinary, reply })
      if (!paused && queue.length >= highWater) {
        paused = true
        socket.pause()
      }
      notify()
    })
    socket.on('error', (err) => log.warn({ err }, 'socket error'))
    socket.on('close', (code, reason) => {
      closed = true
      clearTimeout(stableTimer)
      clearInterval(watchdog)
      if (stats.connected || stats.disconnectedSince === undefined) stats.disconnectedSince = Date.now()
      stats.connected = false
      if (!signal.aborted) log.warn({ code, reason: reason.toString() }, 'disconnected')
      notify()
    })
    const onAbort = () => {
      socket.terminate()
      notify()
    }
    signal.addEventListener('abort', onAbort, { once: true })

    try {
      for (;;) {
        if (queue.length > 0) {
          // The whole queue at once: one hop through the generators for all that waited.
          const messages = queue
          queue = []
          if (paused) {
            paused = false
            socket.resume()
          }
          yield messages
          continue
        }
        if (closed || signal.aborted) break
        await new Promise<void>((resolve) => (wake = resolve))
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      clearTimeout(stableTimer)
      clearInterval(watchdog)
      if (!closed) socket.terminate()
    }
  }
}
