import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Logger } from '../logger.ts'
import { sleep } from '../retry.ts'
import type { LeaseStore } from '../store/leases.ts'

/** Who this process is, in a lease: readable by an operator, unique per process. */
export function holderId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
}

/**
 * One lease, kept by a loop: renewed every third of its time to live while held, tried as
 * often while another holds it. When the holder dies, the lease expires and another process
 * takes it within `ttlMs` plus one try; a holder that stops cleanly gives it up at once.
 */
export class Lease {
  readonly name: string
  readonly holder: string
  readonly #store: Pick<LeaseStore, 'acquire' | 'release'>
  readonly #ttlMs: number
  readonly #log: Logger
  #heldUntil = 0
  #held = false
  #changed: (() => void)[] = []

  constructor(opts: { store: Pick<LeaseStore, 'acquire' | 'release'>; name: string; holder: string; ttlMs: number; log: Logger }) {
    this.name = opts.name
    this.holder = opts.holder
    this.#store = opts.store
    this.#ttlMs = opts.ttlMs
    this.#log = opts.log.child({ component: 'lease', lease: opts.name, holder: opts.holder })
  }

  get held(): boolean {
    return this.#held
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#try()
      await sleep(this.#ttlMs / 3, signal)
    }
  }

  /** Gives the lease up (after the jobs it guards have stopped), so another process need not wait for it to expire. */
  async release(): Promise<void> {
    if (!this.#held) return
    this.#set(false)
    await this.#store.release(this.name, this.holder).catch((err) => this.#log.warn({ err }, 'could not release the lease; it expires by itself'))
  }

  async #try(): Promise<void> {
    const started = Date.now()
    try {
      const mine = await this.#store.acquire(this.name, this.holder, this.#ttlMs)
      if (mine) this.#heldUntil = started + this.#ttlMs
      this.#set(mine)
    } catch (err) {
      // Unconfirmed: still ours until it would expire, less a margin for clocks.
      this.#log.warn({ err }, 'could not renew the lease')
      if (Date.now() > this.#heldUntil - this.#ttlMs / 3) this.#set(false)
    }
  }

  #set(held: boolean): void {
    if (held === this.#held) return
    this.#held = held
    this.#log.info(held ? 'holding the lease: this process runs its jobs' : 'not holding the lease: another process runs its jobs')
    for (const wake of this.#changed.splice(0)) wake()
  }

  /** Resolves once the lease is held (true) or `signal` aborts (false). */
  async whenHeld(signal: AbortSignal): Promise<boolean> {
    while (!this.#held && !signal.aborted) await this.#change(signal)
    return !signal.aborted
  }

  /** A signal that aborts when `signal` does or the lease is lost. */
  whileHeld(signal: AbortSignal): AbortSignal {
    const lost = new AbortController()
    const watch = async () => {
      while (this.#held && !signal.aborted) await this.#change(signal)
      lost.abort()
    }
    void watch()
    return AbortSignal.any([signal, lost.signal])
  }

  #change(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done)
        resolve()
      }
      this.#changed.push(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }
}

/** Runs `worker` only while `lease` is held; stops it when the lease is lost, restarts it when regained. */
export class LeasedWorker {
  readonly #lease: Lease
  readonly #worker: { run(signal: AbortSignal): Promise<void> }

  constructor(lease: Lease, worker: { run(signal: AbortSignal): Promise<void> }) {
    this.#lease = lease
    this.#worker = worker
  }

  async run(signal: AbortSignal): Promise<void> {
    while (await this.#lease.whenHeld(signal)) await this.#worker.run(this.#lease.whileHeld(signal))
  }
}
