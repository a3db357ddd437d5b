import { silentLogger, type Logger } from '../logger.ts'
import { Backoff, sleep } from '../retry.ts'
import type { OutboxStats } from '../store/outbox.ts'
import type { Writer } from './writer.ts'

export type { OutboxStats } from '../store/outbox.ts'

/**
 * Drains the outbox: writes every due pending change, then sleeps until the next one is due
 * (at most `idleMs`, so changes queued by other processes are picked up). Runs inside the
 * ingest service; MongoDB failures are retried with backoff, never fatal.
 */
export class RetryWorker {
  readonly #writer: Pick<Writer, 'flush' | 'outboxStats' | 'nextDueInMs'>
  readonly #log: Logger
  readonly #idleMs: number
  readonly #onStats?: (stats: OutboxStats) => void

  constructor(writer: Pick<Writer, 'flush' | 'outboxStats' | 'nextDueInMs'>, opts: { log?: Logger; idleMs?: number; onStats?: (stats: OutboxStats) => void } = {}) {
    this.#writer = writer
    this.#onStats = opts.onStats
    this.#log = (opts.log ?? silentLogger).child({ component: 'retry-worker' })
    this.#idleMs = opts.idleMs ?? 5_000
  }

  async run(signal: AbortSignal): Promise<void> {
    const failures = new Backoff({ baseMs: 500, maxMs: 30_000 })
    while (!signal.aborted) {
      try {
        const result = await this.#writer.flush()
        if (result.retried > 0) this.#log.info({ ...result }, 'outbox flushed')
        failures.reset()
        if (this.#onStats) this.#onStats(await this.#writer.outboxStats())
        const next = await this.#writer.nextDueInMs()
        await sleep(Math.min(next ?? this.#idleMs, this.#idleMs), signal)
      } catch (err) {
        this.#log.error({ err }, 'outbox flush failed; retrying')
        await sleep(failures.next(), signal)
      }
    }
  }
}
