/** What the PDS charges per write (points), and its per-account allowances. */
export const WRITE_COST = { create: 3, update: 2, delete: 1 } as const
export const HOURLY_POINTS = 5_000
export const DAILY_POINTS = 35_000

const HOUR = 3_600_000
const DAY = 24 * HOUR

/**
 * A per-account view of the PDS write budget: points spent in the last hour and day, and any
 * block a 429 imposed. The PDS stays the authority (a 429 always wins); this keeps a process
 * from walking into the limit and from retrying before the reset.
 */
export class RateBudget {
  readonly #hourly: number
  readonly #daily: number
  readonly #now: () => number
  readonly #spent = new Map<string, { at: number; points: number }[]>()
  readonly #blockedUntil = new Map<string, number>()

  constructor(opts: { hourly?: number; daily?: number; now?: () => number } = {}) {
    this.#hourly = opts.hourly ?? HOURLY_POINTS
    this.#daily = opts.daily ?? DAILY_POINTS
    this.#now = opts.now ?? Date.now
  }

  /** Milliseconds until `points` may be spent for `did` (0: now). */
  waitMs(did: string, points: number): number {
    const now = this.#now()
    const blocked = (this.#blockedUntil.get(did) ?? 0) - now
    const entries = this.#prune(did, now)
    const wait = (limit: number, window: number) => {
      let total = entries.filter((e) => e.at > now - window).reduce((sum, e) => sum + e.points, 0)
      if (total + points <= limit) return 0
      // The earliest moment enough old spending has left the window.
      for (const e of entries) {
        if (e.at <= now - window) continue
        total -= e.points
        if (total + points <= limit) return e.at + window - now
      }
      return window
    }
    return Math.max(0, blocked, wait(this.#hourly, HOUR), wait(this.#daily, DAY))
  }

  /** The one gate every write passes: spends `points` now and answers 0, or answers the wait. */
  take(did: string, points: number): number {
    const wait = this.waitMs(did, points)
    if (wait === 0) this.spend(did, points)
    return wait
  }

  spend(did: string, points: number): void {
    const entries = this.#spent.get(did) ?? []
    entries.push({ at: this.#now(), points })
    this.#spent.set(did, entries)
  }

  /** A 429: nothing more for this account until `untilMs`. */
  block(did: string, untilMs: number): void {
    this.#blockedUntil.set(did, Math.max(untilMs, this.#blockedUntil.get(did) ?? 0))
  }

  #prune(did: string, now: number) {
    const entries = (this.#spent.get(did) ?? []).filter((e) => e.at > now - DAY)
    this.#spent.set(did, entries)
    return entries
  }
}
