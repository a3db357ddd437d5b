import type { RepoStateDoc } from '../store/collections.ts'
import type { RepoReader } from '../atproto/repo-reader.ts'

/**
 * Answers "is this repo still at the rev we read?" for a whole run: a PDS many of the run's
 * repos live on is asked once with `listRepos` (the platform's own PDS, in practice), the
 * others per repo with `getLatestCommit`; either at the PDS recorded when the repo was read,
 * so an unchanged repo costs no DID resolution. A PDS that no longer lists the repo as active
 * sends it down the full path, which resolves the DID afresh.
 */
export class RevChecker {
  readonly #reader: RepoReader
  readonly #minRepos: number
  readonly #maxPages: number
  readonly #listings = new Map<string, Promise<Awaited<ReturnType<RepoReader['listRevs']>> | undefined>>()

  constructor(reader: RepoReader, opts: { minRepos?: number; maxPages?: number } = {}) {
    this.#reader = reader
    this.#minRepos = opts.minRepos ?? 20
    this.#maxPages = opts.maxPages ?? 50
  }

  /** Lists the PDSes that enough of these repos live on (each at most once per run). */
  prime(states: Iterable<RepoStateDoc>): void {
    const perPds = new Map<string, number>()
    for (const state of states) if (state.pds) perPds.set(state.pds, (perPds.get(state.pds) ?? 0) + 1)
    for (const [pds, n] of perPds) {
      if (n < this.#minRepos || this.#listings.has(pds)) continue
      // A listing that fails or is too long to finish leaves its repos to getLatestCommit.
      this.#listings.set(pds, this.#reader.listRevs(pds, { maxPages: this.#maxPages }).catch(() => undefined))
    }
  }

  /** The repo's current rev, or undefined when it must be read to know. */
  async revOf(state: RepoStateDoc): Promise<string | undefined> {
    if (!state.pds) return this.#reader.latestRev(state._id).catch(() => undefined)
    const listing = await this.#listings.get(state.pds)
    const listed = listing?.revs.get(state._id)
    if (listed) return listed.active ? listed.rev : undefined
    // Listed whole and not there: the repo moved away (or is gone); only a full read can tell.
    if (listing?.complete) return undefined
    return this.#reader.latestRevAt(state.pds, state._id).catch(() => undefined)
  }
}
