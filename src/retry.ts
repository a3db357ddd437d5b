/**
 * Retry timing, in one place: exponential backoff with full jitter (so that many clients
 * reconnecting after one outage spread out), capped, reset once things work again.
 */
export class Backoff {
  readonly #baseMs: number
  readonly #maxMs: number
  #attempt = 0

  constructor(opts: { baseMs?: number; maxMs?: number } = {}) {
    this.#baseMs = opts.baseMs ?? 250
    this.#maxMs = opts.maxMs ?? 30_000
  }

  get attempt(): number {
    return this.#attempt
  }

  /** The delay before the next try: uniform in [base/2, min(max, base * 2^n)]. */
  next(): number {
    return this.delayFor(this.#attempt++)
  }

  /** The delay before try `attempt` (0-based), for callers that keep the count themselves. */
  delayFor(attempt: number): number {
    const ceiling = Math.min(this.#maxMs, this.#baseMs * 2 ** Math.min(attempt, 30))
    const floor = Math.min(this.#baseMs / 2, ceiling)
    return floor + Math.random() * (ceiling - floor)
  }

  reset(): void {
    this.#attempt = 0
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
