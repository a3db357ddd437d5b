import { XrpcClient } from '../atproto/xrpc.ts'
import { MOOD_NSID } from '../sync/mood.ts'

/**
 * Every repo a relay knows to hold moods, from `com.atproto.sync.listReposByCollection`, page by
 * page (lazily: the backfill starts on the first page while the rest is listed).
 */
export async function* discoverRepos(relayUrl: string, opts: { fetch?: typeof globalThis.fetch; pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<string> {
  const client = new XrpcClient({ url: relayUrl, fetch: opts.fetch, timeoutMs: 30_000 })
  const seen = new Set<string>()
  let cursor: string | undefined
  do {
    if (opts.signal?.aborted) return
    const page = await client.call<{ repos?: { did?: unknown }[]; cursor?: string }>('com.atproto.sync.listReposByCollection', {
      query: { collection: MOOD_NSID, limit: String(opts.pageSize ?? 2000), ...(cursor ? { cursor } : {}) },
    })
    const repos = Array.isArray(page.repos) ? page.repos : []
    for (const repo of repos) {
      if (typeof repo.did !== 'string' || !repo.did.startsWith('did:') || seen.has(repo.did)) continue
      seen.add(repo.did)
      yield repo.did
    }
    cursor = repos.length > 0 && typeof page.cursor === 'string' && page.cursor !== '' ? page.cursor : undefined
  } while (cursor)
}
