import type { Logger } from '../logger.ts'
import { sleep } from '../retry.ts'

export interface StoreProbeState {
  /** Since when MongoDB has failed or not answered a ping (ms), while it does. */
  failingSince?: number
  lastOkAt?: number
  lastError?: string
}

/**
 * Pings MongoDB on a timer, so a server that hangs (answers nothing: a frozen process, a
 * black-holed network) is reported like one that refuses, even while the indexer has nothing
 * to write. A ping unanswered after `timeoutMs` counts as failing from when it was sent.
 */
export class StoreProbe {
  readonly state: StoreProbeState = {}
  readonly #ping: () => Promise<void>
  readonly #intervalMs: number
  readonly #timeoutMs: number
  readonly #log: Logger
  #pending?: Promise<void>

  constructor(opts: { ping: () => Promise<void>; intervalMs: number; timeoutMs: number; log: Logger }) {
    this.#ping = opts.ping
    this.#intervalMs = opts.intervalMs
    this.#timeoutMs = opts.timeoutMs
    this.#log = opts.log.child({ component: 'store-probe' })
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.probe()
      await sleep(this.#intervalMs, signal)
    }
  }

  /** One ping; resolves within `timeoutMs` whatever MongoDB does. */
  async probe(): Promise<void> {
    // A hung ping is left to finish on its own (or fail when the client closes); no new one
    // is sent beside it, so they never pile up.
    if (this.#pending) return
    const sent = Date.now()
    const pending = this.#ping().then(
      () => this.#answered(),
      (err: unknown) => this.#failed(sent, (err as Error).message),
    )
    this.#pending = pending.finally(() => (this.#pending = undefined))
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([pending.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.#timeoutMs)))])
    clearTimeout(timer)
    if (timedOut) this.#failed(sent, `no answer to a ping within ${this.#timeoutMs} ms`)
  }

  #answered(): void {
    if (this.state.failingSince !== undefined) this.#log.info('MongoDB answers again')
    this.state.failingSince = undefined
    this.state.lastError = undefined
    this.state.lastOkAt = Date.now()
  }

  #failed(sent: number, problem: string): void {
    if (this.state.failingSince === undefined) this.#log.error({ problem }, 'MongoDB is not answering')
    this.state.failingSince ??= sent
    this.state.lastError = problem
  }
}
