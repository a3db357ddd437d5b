import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { answers, Daemon, freePort } from './daemon.ts'
import { goTool } from './tools.ts'

export interface RelayOptions {
  /** The PDS whose repos it relays (`http://localhost:PORT`). */
  pdsUrl: string
  plcUrl: string
}

/**
 * Bluesky's relay (indigo `cmd/relay`) in front of the rig's PDS, as production reads the
 * network: it re-verifies every commit and serves `com.atproto.sync.subscribeRepos`.
 *
 * The relay refuses to crawl a loopback PDS through any API (its host check allows public IPs
 * only), so the host row is written into its database between a first start, which creates
 * the schema, and the real one, which subscribes to every active host.
 */
export class RelayServer {
  readonly url: string
  readonly adminPassword: string
  readonly #daemon: Daemon

  private constructor(url: string, adminPassword: string, daemon: Daemon) {
    this.url = url
    this.adminPassword = adminPassword
    this.#daemon = daemon
  }

  static async start(opts: RelayOptions): Promise<RelayServer> {
    const binary = await goTool('relay')
    const adminPassword = randomBytes(12).toString('hex')
    const start = async (dir?: string) => {
      const [port, metrics] = [await freePort(), await freePort()]
      const daemon = await Daemon.start({
        name: 'relay',
        command: binary,
        dir,
        args: (d) => [
          '--admin-password', adminPassword,
          '--plc-host', opts.plcUrl,
          '--log-level', 'warn',
          'serve',
          '--db-url', `sqlite://${join(d, 'relay.sqlite')}`,
          '--persist-dir', join(d, 'persist'),
          '--bind', `127.0.0.1:${port}`,
          '--metrics-listen', `127.0.0.1:${metrics}`,
          '--allow-insecure-hosts',
          '--disable-request-crawl',
        ],
        probe: () => answers(`http://127.0.0.1:${port}/_health`),
      })
      return { daemon, port }
    }

    const first = await start()
    await first.daemon.stop({ keepData: true })
    const { DatabaseSync } = await sqlite()
    const db = new DatabaseSync(join(first.daemon.dir, 'relay.sqlite'))
    try {
      // The hostname must be the one in the DID documents; last_seq -1: from the live tail.
      db.prepare(
        `insert into host (created_at, updated_at, hostname, no_ssl, account_limit, trusted, status, last_seq)
         values (datetime('now'), datetime('now'), ?, 1, 100000, 1, 'active', -1)`,
      ).run(new URL(opts.pdsUrl).host)
    } finally {
      db.close()
    }
    const { daemon, port } = await start(first.daemon.dir)
    return new RelayServer(`http://127.0.0.1:${port}`, adminPassword, daemon)
  }

  /** Its firehose (`subscribeRepos`). */
  get firehoseUrl(): string {
    return `${this.url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`
  }

  async stop(): Promise<void> {
    await this.#daemon.stop()
  }
}

/** node:sqlite, without the one-time "SQLite is an experimental feature" line on stderr. */
async function sqlite(): Promise<typeof import('node:sqlite')> {
  const emit = process.emitWarning
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (!String(warning).includes('SQLite')) (emit as (...a: unknown[]) => void).call(process, warning, ...rest)
  }) as typeof process.emitWarning
  try {
    return await import('node:sqlite')
  } finally {
    process.emitWarning = emit
  }
}
