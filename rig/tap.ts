import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { answers, Daemon, freePort } from './daemon.ts'
import { goTool } from './tools.ts'

export interface TapOptions {
  relayUrl: string
  plcUrl: string
  collections?: readonly string[]
  /** Deliver by POSTing here instead of over the WebSocket. */
  webhookUrl?: string
  /** Seconds before an unacked event is sent again (Tap's default: 60). */
  retryTimeoutSeconds?: number
  /** Restart on the data of an earlier run. */
  dir?: string
  adminPassword?: string
}

/**
 * Bluesky's Tap (indigo `cmd/tap`) on the rig's relay: it backfills each repo added with
 * `/repos/add` from its PDS, then follows the relay, and delivers JSON events over a WebSocket
 * with acks (or a webhook). An operator who already runs one points `moodsync ingest --source
 * tap` at it.
 */
const basic = (password: string) => `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`

export class TapDaemon {
  readonly url: string
  readonly adminPassword: string
  readonly #daemon: Daemon
  readonly #opts: TapOptions

  private constructor(url: string, adminPassword: string, daemon: Daemon, opts: TapOptions) {
    this.url = url
    this.adminPassword = adminPassword
    this.#daemon = daemon
    this.#opts = opts
  }

  static async start(opts: TapOptions): Promise<TapDaemon> {
    const binary = await goTool('tap')
    const adminPassword = opts.adminPassword ?? randomBytes(12).toString('hex')
    const port = await freePort()
    const daemon = await Daemon.start({
      name: 'tap',
      command: binary,
      dir: opts.dir,
      args: (dir) => [
        'run',
        '--db-url', `sqlite://${join(dir, 'tap.db')}`,
        '--bind', `127.0.0.1:${port}`,
        '--plc-url', opts.plcUrl,
        '--relay-url', opts.relayUrl,
        '--collection-filters', (opts.collections ?? ['computer.aesthetic.mood']).join(','),
        '--admin-password', adminPassword,
        '--retry-timeout', `${opts.retryTimeoutSeconds ?? 60}s`,
        '--log-level', 'warn',
        ...(opts.webhookUrl ? ['--webhook-url', opts.webhookUrl] : []),
      ],
      // Every request needs the admin password once one is set, /health too.
      probe: () => answers(`http://127.0.0.1:${port}/health`, [200], { authorization: basic(adminPassword) }),
    })
    return new TapDaemon(`http://127.0.0.1:${port}`, adminPassword, daemon, opts)
  }

  get authorization(): string {
    return basic(this.adminPassword)
  }

  /** Tracks repos: Tap backfills each from its PDS, then follows it live. */
  async addRepos(dids: readonly string[]): Promise<void> {
    const res = await fetch(`${this.url}/repos/add`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: this.authorization }, body: JSON.stringify({ dids }) })
    if (!res.ok) throw new Error(`tap /repos/add answered ${res.status}: ${await res.text()}`)
  }

  /** Stops it; with `keepData`, `restart()` brings it back on the same database. */
  async stop(opts: { keepData?: boolean } = {}): Promise<void> {
    await this.#daemon.stop(opts)
  }

  async restart(): Promise<TapDaemon> {
    await this.stop({ keepData: true })
    return TapDaemon.start({ ...this.#opts, dir: this.#daemon.dir, adminPassword: this.adminPassword })
  }
}
