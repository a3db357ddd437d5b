import type { HeartbeatEvent } from './events.ts'

/**
 * How far behind the network a heartbeat's watermark stays: it covers a clock difference
 * between us and the server and events the server has stamped but not yet written to us.
 */
export const DEFAULT_WATERMARK_MARGIN_MS = 30_000

/**
 * Decides what a heartbeat (a pong with nothing waiting) proves, per connection. A connection
 * opened at the live tail is live at once; one opened with a cursor is replaying until an
 * event emitted after it was opened arrives, since events come in order. Only a live
 * connection's heartbeats say the stream is caught up (lag) and move the position (the
 * watermark): a replay that finds nothing of ours sends nothing, and must not be skipped.
 */
export class Watermark {
  readonly #marginMs: number
  /** Whether positions are `time_us` (Jetstream) and a watermark can be one. */
  readonly #timeCursors: boolean
  #openedAt = 0
  #live = false
  /** The newest network time (µs) of anything delivered on the stream. */
  #deliveredUs = 0

  constructor(opts: { marginMs?: number; timeCursors: boolean }) {
    this.#marginMs = opts.marginMs ?? DEFAULT_WATERMARK_MARGIN_MS
    this.#timeCursors = opts.timeCursors
  }

  /** A connection is being opened; `resuming`: with a cursor (the server replays first). */
  connecting(resuming: boolean): void {
    this.#openedAt = Date.now()
    this.#live = !resuming
  }

  /** An event arrived, emitted at `emittedAt` (ms). */
  delivered(emittedAt: number | undefined): void {
    if (emittedAt === undefined) return
    this.#deliveredUs = Math.max(this.#deliveredUs, emittedAt * 1000)
    if (!this.#live && emittedAt >= this.#openedAt) this.#live = true
  }

  /** The heartbeat to yield for a pong at `at` (ms), or none while replaying. */
  heartbeat(at: number): HeartbeatEvent | undefined {
    if (!this.#live) return undefined
    const event: HeartbeatEvent = { kind: 'heartbeat', emittedAt: at }
    const watermarkUs = (at - this.#marginMs) * 1000
    if (this.#timeCursors && watermarkUs > this.#deliveredUs) {
      this.#deliveredUs = watermarkUs
      event.cursor = watermarkUs
    }
    return event
  }
}
