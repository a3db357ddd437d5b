import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { answers, Daemon, freePort } from './daemon.ts'
import { goTool } from './tools.ts'
import { waitFor } from './wait.ts'

export interface CollectionDirectoryOptions {
  /** The relay whose firehose it follows (its http base). */
  relayUrl: string
  /** A PDS crawled once at start, for the repos written before it subscribed. */
  pdsUrl?: string
}

/**
 * Bluesky's collection directory (indigo `cmd/collectiondir`) on the rig's relay: the service
 * behind `com.atproto.sync.listReposByCollection` in production, answering `{ repos: [{ did }],
 * cursor? }`, in the order each (did, collection) pair was first seen.
 */
export class CollectionDirectoryDaemon {
  readonly url: string
  readonly #daemon: Daemon

  private constructor(url: string, daemon: Daemon) {
    this.url = url
    this.#daemon = daemon
  }

  static async start(opts: CollectionDirectoryOptions): Promise<CollectionDirectoryDaemon> {
    const binary = await goTool('collectiondir')
    const adminToken = randomBytes(12).toString('hex')
    const [port, metrics] = [await freePort(), await freePort()]
    const daemon = await Daemon.start({
      name: 'collectiondir',
      command: binary,
      args: (dir) => [
        'serve',
        // Both default to every interface (:2510, :2511).
        '--api-listen', `127.0.0.1:${port}`,
        '--metrics-listen', `127.0.0.1:${metrics}`,
        '--pebble', join(dir, 'directory.pebble'),
        // Required, though only a daily-activity side table lives there.
        '--dau-directory', join(dir, 'dau'),
        '--upstream', opts.relayUrl,
        '--admin-token', adminToken,
      ],
      probe: () => answers(`http://127.0.0.1:${port}/_health`),
    })
    const directory = new CollectionDirectoryDaemon(`http://127.0.0.1:${port}`, daemon)
    try {
      // It subscribes after /_health answers, from the live tail (no cursor on a first run):
      // until then a write would be missed, and only its log says when it is in.
      await directory.#logged(/msg="event subscription response" code=101/, 'its firehose subscription')
      // The relay's listRepos knows only repos it has seen commit, and it has no describeRepo.
      if (opts.pdsUrl) await directory.#crawl(opts.pdsUrl, adminToken)
    } catch (err) {
      await daemon.stop()
      throw err
    }
    return directory
  }

  /** Every DID it lists for `collection`, paged as a client would. */
  async repos(collection = 'computer.aesthetic.mood'): Promise<string[]> {
    const dids: string[] = []
    let cursor: string | undefined
    do {
      const query = new URLSearchParams({ collection, limit: '1000', ...(cursor ? { cursor } : {}) })
      const res = await fetch(`${this.url}/xrpc/com.atproto.sync.listReposByCollection?${query}`)
      if (!res.ok) throw new Error(`collectiondir answered ${res.status}: ${await res.text()}`)
      const page = (await res.json()) as { repos: { did: string }[]; cursor?: string }
      dids.push(...page.repos.map((r) => r.did))
      // A full page always carries a cursor, so the end is an empty page.
      cursor = page.repos.length > 0 ? page.cursor : undefined
    } while (cursor)
    return dids
  }

  /** Waits until `did` is listed for `collection` (a firehose commit takes ~0.1 s here). */
  async waitForRepo(did: string, collection = 'computer.aesthetic.mood', timeoutMs = 10_000): Promise<void> {
    await waitFor(async () => (await this.repos(collection)).includes(did), { timeoutMs, intervalMs: 50, what: `collectiondir to list ${did} for ${collection}` })
  }

  async stop(): Promise<void> {
    await this.#daemon.stop()
  }

  // The crawl request returns at once and its status entry is only made later (then dropped
  // when done), so its end is read from the log.
  async #crawl(pdsUrl: string, adminToken: string): Promise<void> {
    const res = await fetch(`${this.url}/admin/pds/requestCrawl`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ hostname: pdsUrl }),
    })
    if (!res.ok) throw new Error(`collectiondir requestCrawl answered ${res.status}: ${await res.text()}`)
    const host = pdsUrl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const end = await this.#logged(new RegExp(`msg="crawl (done|err)" host=${host}( err=.*)?`), `its crawl of ${pdsUrl}`)
    if (end.startsWith('msg="crawl err"')) throw new Error(`collectiondir could not crawl ${pdsUrl}: ${end}`)
    // "crawl done" means every pair was queued; the last few are written moments later.
  }

  async #logged(line: RegExp, what: string): Promise<string> {
    try {
      return await waitFor(() => line.exec(this.#daemon.output)?.[0], { timeoutMs: 30_000, what })
    } catch (err) {
      throw new Error(`${(err as Error).message}; collectiondir's output:\n${this.#daemon.output}`, { cause: err })
    }
  }
}
