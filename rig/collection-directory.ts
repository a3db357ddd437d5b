import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A loopback stand-in for a relay's `com.atproto.sync.listReposByCollection`, which a PDS does
 * not serve: it lists the PDS's repos (`listRepos`), keeps those whose `describeRepo` names the
 * collection, and answers in the relay's documented shape (`{ repos: [{ did }], cursor? }`,
 * `limit` 1-2000, default 500, an opaque cursor).
 */
export class CollectionDirectory {
  readonly #server: Server
  readonly url: string
  /** How many list calls it answered (the client must page). */
  calls = 0

  private constructor(server: Server, url: string) {
    this.#server = server
    this.url = url
  }

  static async start(pdsUrl: string): Promise<CollectionDirectory> {
    let directory: CollectionDirectory
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(body))
      }
      if (url.pathname !== '/xrpc/com.atproto.sync.listReposByCollection') return send(404, { error: 'MethodNotImplemented', message: url.pathname })
      const collection = url.searchParams.get('collection')
      const limit = Number(url.searchParams.get('limit') ?? 500)
      if (!collection || !Number.isInteger(limit) || limit < 1 || limit > 2000) return send(400, { error: 'InvalidRequest', message: 'collection and a limit of 1-2000 are required' })
      directory.calls++
      reposWith(pdsUrl, collection).then(
        (dids) => {
          const after = url.searchParams.get('cursor')
          const start = after === null ? 0 : dids.findIndex((d) => d > after)
          const page = start < 0 ? [] : dids.slice(start, start + limit)
          const more = start >= 0 && start + limit < dids.length
          send(200, { repos: page.map((did) => ({ did })), ...(more ? { cursor: page.at(-1) } : {}) })
        },
        (err: Error) => send(500, { error: 'InternalServerError', message: err.message }),
      )
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    directory = new CollectionDirectory(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    return directory
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

async function reposWith(pdsUrl: string, collection: string): Promise<string[]> {
  const dids: string[] = []
  let cursor: string | undefined
  do {
    const res = await fetch(`${pdsUrl}/xrpc/com.atproto.sync.listRepos?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    const page = (await res.json()) as { repos: { did: string; active?: boolean }[]; cursor?: string }
    for (const repo of page.repos) {
      if (repo.active === false) continue
      const described = await fetch(`${pdsUrl}/xrpc/com.atproto.repo.describeRepo?repo=${encodeURIComponent(repo.did)}`)
      if (!described.ok) continue
      const { collections } = (await described.json()) as { collections: string[] }
      if (collections.includes(collection)) dids.push(repo.did)
    }
    cursor = page.repos.length > 0 ? page.cursor : undefined
  } while (cursor)
  return dids.sort()
}
