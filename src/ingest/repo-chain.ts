/** The fields of a commit a sync 1.1 chain links by. CIDs as hex of their bytes. */
export interface ChainLink {
  rev: string
  /** The previous commit's rev, when the frame says. */
  since?: string
  /** The MST root before this commit (sync 1.1), when the frame says. */
  prevData?: string
  /** The MST root after it; undefined when it could not be read (the chain then restarts). */
  data?: string
}

/**
 * Each followed repo's last rev and MST root, so that a commit which does not follow on from
 * the last one we saw (a missed commit: a relay that dropped one, a gap upstream) is noticed
 * for that repo alone. Only repos we have indexed something of since start are followed: the
 * network's others cannot hide a record of ours. Bounded, least recently used first out.
 */
export class RepoChain {
  readonly #repos = new Map<string, { rev: string; data?: string }>()
  /** How many followed DIDs have each hash: most frames are ruled out before their DID is decoded. */
  readonly #hashes = new Map<number, number>()
  readonly #hash: (did: string) => number
  readonly #max: number

  constructor(hash: (did: string) => number, max = 100_000) {
    this.#hash = hash
    this.#max = max
  }

  /** False when no followed repo's DID has this hash. */
  mayHave(hash: number): boolean {
    return this.#hashes.has(hash)
  }

  has(did: string): boolean {
    return this.#repos.has(did)
  }

  /**
   * Takes the repo's next commit and starts following it; returns why the chain is broken,
   * if it is. A commit no newer than the last one (a replay) is ignored, as sync 1.1 says.
   */
  advance(did: string, link: ChainLink): string | undefined {
    const last = this.#repos.get(did)
    if (last !== undefined && link.rev <= last.rev) return undefined
    let broken: string | undefined
    if (last !== undefined) {
      if (link.prevData !== undefined && last.data !== undefined && link.prevData !== last.data) {
        broken = `commit ${link.rev} follows a tree (prevData) other than the one commit ${last.rev} left: commits were missed`
      } else if (link.prevData === undefined && link.since !== undefined && link.since !== last.rev) {
        broken = `commit ${link.rev} follows rev ${link.since}, the last seen was ${last.rev}: commits were missed`
      }
      this.#repos.delete(did)
    } else {
      if (this.#repos.size >= this.#max) this.forget(this.#repos.keys().next().value!)
      const hash = this.#hash(did)
      this.#hashes.set(hash, (this.#hashes.get(hash) ?? 0) + 1)
    }
    this.#repos.set(did, { rev: link.rev, data: link.data })
    return broken
  }

  /** The repo's state was replaced (`#sync`) or is gone: the next commit starts afresh. */
  forget(did: string): void {
    if (!this.#repos.delete(did)) return
    const hash = this.#hash(did)
    const n = this.#hashes.get(hash)! - 1
    if (n === 0) this.#hashes.delete(hash)
    else this.#hashes.set(hash, n)
  }
}
