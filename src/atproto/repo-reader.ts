import type { IdResolver } from '@atproto/identity'
import { cborToLexRecord, def, ensureV3Commit, parseObjByDef, type Commit } from '@atproto/repo'
import { MoodsyncError } from '../errors.ts'
import { silentLogger, type Logger } from '../logger.ts'
import { Backoff, sleep } from '../retry.ts'
import { BlockMismatchError, CarBlocks, CarFormatError } from './car-blocks.ts'
import { verifyCommitSignature } from './signature.ts'
import { leavesWithPrefix } from './mst-prefix.ts'
import { XrpcClient, PdsError } from './xrpc.ts'

/** One record of our collection, as the repo holds it (not validated yet). */
export interface RepoRecord {
  rkey: string
  cid: string
  value: unknown
}

/** Every record of our collection in one repo, at one revision. */
export interface RepoSnapshot {
  did: string
  rev: string
  /** The PDS the DID document names. */
  pds: string
  /** The handle the DID document claims, when it claims one. */
  handle?: string
  records: RepoRecord[]
  /** `car`: read from the signed repo and verified; `listRecords`: the fallback, unverified. */
  via: 'car' | 'listRecords'
  /** Size of the CAR read (0 for listRecords). */
  bytes: number
}

/** Why a repo could not be read: the kind decides what the caller does and how it reports it. */
export type RepoFailureKind = 'deactivated' | 'takendown' | 'suspended' | 'not-found' | 'unresolvable' | 'unreachable' | 'rate-limited' | 'verification' | 'invalid'

export class RepoUnavailableError extends MoodsyncError {
  override name = 'RepoUnavailableError'
  readonly did: string
  readonly kind: RepoFailureKind
  constructor(did: string, kind: RepoFailureKind, message: string, opts: { cause?: unknown } = {}) {
    super(`${did}: ${kind}: ${message}`, opts)
    this.did = did
    this.kind = kind
  }
}

export interface RepoReaderOptions {
  idResolver: IdResolver
  /** The collection whose records a read returns (the MST is walked from its prefix only). */
  collection: string
  fetch?: typeof globalThis.fetch
  log?: Logger
  /** A CAR larger than this is not held in memory: the repo is listed with listRecords (default 256 MiB). */
  maxCarBytes?: number
  /** Tries per request for transient failures (network, 5xx, short 429s). */
  attempts?: number
  signal?: AbortSignal
}

const REPO_STATUS: Record<string, RepoFailureKind> = {
  RepoDeactivated: 'deactivated',
  RepoTakendown: 'takendown',
  RepoSuspended: 'suspended',
  RepoNotFound: 'not-found',
}
const DEFAULT_MAX_CAR_BYTES = 256 * 1024 * 1024
/** A 429 that resets later than this is reported, not waited out. */
const MAX_RATE_WAIT_MS = 60_000

/**
 * Reads whole repos from their PDS: `getRepo`, indexed as it downloads (`CarBlocks`); the
 * commit's DID and its signature by the DID's key are checked, then only our collection's part
 * of the MST is walked (`leavesWithPrefix`), every block hashed against its CID before it is
 * used, so each record returned is proven from the signed root. Blocks never used are not
 * hashed: they cannot change what is returned. `getLatestCommit` answers "has it changed?"
 * without the download.
 */
export class RepoReader {
  readonly #opts: RepoReaderOptions
  readonly #log: Logger
  readonly #clients = new Map<string, XrpcClient>()
  readonly #prefix: string

  constructor(opts: RepoReaderOptions) {
    this.#opts = opts
    this.#prefix = `${opts.collection}/`
    this.#log = (opts.log ?? silentLogger).child({ component: 'repo-reader' })
  }

  /** The repo's current revision (one small request), at the PDS its DID document names now. */
  async latestRev(did: string): Promise<string> {
    return this.latestRevAt((await this.#identity(did)).pds, did)
  }

  /** The repo's current revision at a PDS already known (no DID resolution). */
  async latestRevAt(pds: string, did: string): Promise<string> {
    const res = await this.#retry(did, () => this.#client(pds).call<{ rev: string }>('com.atproto.sync.getLatestCommit', { query: { did } }))
    return res.rev
  }

  /**
   * Every repo a PDS hosts with its current rev, from `com.atproto.sync.listRepos` (1,000 a
   * page, at most `maxPages`): one call answers "changed?" for a whole PDS of users.
   */
  async listRevs(pds: string, opts: { maxPages?: number } = {}): Promise<{ revs: Map<string, { rev: string; active: boolean }>; complete: boolean }> {
    const revs = new Map<string, { rev: string; active: boolean }>()
    const client = this.#client(pds)
    let cursor: string | undefined
    for (let page = 0; page < (opts.maxPages ?? 50); page++) {
      const res = await this.#retry(pds, () => client.call<{ repos?: { did: string; rev: string; active?: boolean }[]; cursor?: string }>('com.atproto.sync.listRepos', { query: { limit: '1000', ...(cursor ? { cursor } : {}) } }))
      const repos = res.repos ?? []
      for (const repo of repos) if (typeof repo.did === 'string' && typeof repo.rev === 'string') revs.set(repo.did, { rev: repo.rev, active: repo.active !== false })
      // A short page is the last (a PDS may still send a cursor with it).
      cursor = repos.length >= 1000 ? res.cursor : undefined
      if (!cursor) return { revs, complete: true }
    }
    return { revs, complete: false }
  }

  async read(did: string): Promise<RepoSnapshot> {
    const identity = await this.#identity(did)
    let car: CarBlocks
    try {
      // The CAR is indexed as it downloads; a body cut off is retried whole.
      car = await this.#retry(did, async () => {
        const body = await this.#client(identity.pds).stream('com.atproto.sync.getRepo', { query: { did }, maxBytes: this.#opts.maxCarBytes ?? DEFAULT_MAX_CAR_BYTES })
        try {
          return await CarBlocks.read(body)
        } catch (err) {
          if (err instanceof CarFormatError) throw new RepoUnavailableError(did, 'invalid', `unreadable repo CAR: ${err.message}`, { cause: err })
          throw err
        }
      })
    } catch (err) {
      if (err instanceof RepoUnavailableError && err.cause instanceof PdsError && canList(err.cause)) {
        this.#log.warn({ did, err: err.cause }, 'repo CAR unavailable; listing records instead (unverified)')
        return { ...(await this.#list(did, identity.pds)), ...handleOf(identity) }
      }
      throw err
    }
    try {
      return { did, pds: identity.pds, ...handleOf(identity), via: 'car', bytes: car.bytes, ...this.#verified(did, car, identity.signingKey) }
    } catch (err) {
      if (!(err instanceof RepoUnavailableError) || err.kind !== 'verification') throw err
      // Keys rotate: check once more against a freshly resolved DID document.
      const fresh = await this.#identity(did, true)
      if (fresh.signingKey === identity.signingKey) throw err
      return { did, pds: fresh.pds, ...handleOf(fresh), via: 'car', bytes: car.bytes, ...this.#verified(did, car, fresh.signingKey) }
    }
  }

  /** The commit (its DID, its signature by `signingKey`), then our collection's leaves, each block hashed as it is used. */
  #verified(did: string, car: CarBlocks, signingKey: string): { rev: string; records: RepoRecord[] } {
    const fail = (err: unknown, what: string): never => {
      if (err instanceof RepoUnavailableError) throw err
      const kind: RepoFailureKind = err instanceof BlockMismatchError ? 'verification' : 'invalid'
      throw new RepoUnavailableError(did, kind, kind === 'verification' ? (err as Error).message : `${what}: ${(err as Error).message}`, { cause: err })
    }
    let commit: Commit
    try {
      const bytes = car.get(car.root)
      if (!bytes) throw new Error(`missing commit block ${car.root.toString()}`)
      commit = ensureV3Commit(parseObjByDef(bytes, car.root, def.versionedCommit).obj)
    } catch (err) {
      return fail(err, 'unreadable repo CAR')
    }
    if (commit.did !== did) throw new RepoUnavailableError(did, 'verification', `the repo is signed for ${commit.did}`)
    let signed: boolean
    try {
      signed = verifyCommitSignature(commit, signingKey)
    } catch (err) {
      throw new RepoUnavailableError(did, 'verification', `cannot check the commit's signature: ${(err as Error).message}`, { cause: err })
    }
    if (!signed) throw new RepoUnavailableError(did, 'verification', `invalid signature on the commit at rev ${commit.rev}`)
    const records: RepoRecord[] = []
    try {
      for (const leaf of leavesWithPrefix(car, commit.data, this.#prefix)) {
        const bytes = car.get(leaf.value)
        if (!bytes) throw new Error(`missing record block ${leaf.value.toString()}`)
        records.push({ rkey: leaf.key.slice(this.#prefix.length), cid: leaf.value.toString(), value: decodeRecord(bytes) })
      }
    } catch (err) {
      return fail(err, 'incomplete repo CAR')
    }
    return { rev: commit.rev, records }
  }

  /** The fallback where the CAR cannot be had: the PDS's own listing, with the latest rev. */
  async #list(did: string, pds: string): Promise<RepoSnapshot> {
    const client = this.#client(pds)
    // Taken first: a record written while listing then makes the next run read again.
    const rev = (await this.#retry(did, () => client.call<{ rev: string }>('com.atproto.sync.getLatestCommit', { query: { did } }))).rev
    const records: RepoRecord[] = []
    let cursor: string | undefined
    do {
      const page = await this.#retry(did, () =>
        client.call<{ records: { uri: string; cid: string; value: unknown }[]; cursor?: string }>('com.atproto.repo.listRecords', {
          query: { repo: did, collection: this.#opts.collection, limit: '100', ...(cursor ? { cursor } : {}) },
        }),
      )
      for (const r of page.records) records.push({ rkey: r.uri.slice(r.uri.lastIndexOf('/') + 1), cid: r.cid, value: r.value })
      cursor = page.records.length > 0 ? page.cursor : undefined
    } while (cursor)
    records.sort((a, b) => (a.rkey < b.rkey ? -1 : a.rkey > b.rkey ? 1 : 0))
    return { did, rev, pds, records, via: 'listRecords', bytes: 0 }
  }

  async #identity(did: string, forceRefresh = false): Promise<{ pds: string; signingKey: string; handle?: string }> {
    try {
      const data = await this.#opts.idResolver.did.resolveAtprotoData(did, forceRefresh)
      return { pds: data.pds, signingKey: data.signingKey, ...(data.handle && data.handle !== 'handle.invalid' ? { handle: data.handle } : {}) }
    } catch (err) {
      throw new RepoUnavailableError(did, 'unresolvable', `cannot resolve the DID's PDS and key: ${(err as Error).message}`, { cause: err })
    }
  }

  #client(pds: string): XrpcClient {
    let client = this.#clients.get(pds)
    if (!client) {
      client = new XrpcClient({ url: pds, fetch: this.#opts.fetch, timeoutMs: 30_000 })
      this.#clients.set(pds, client)
    }
    return client
  }

  /** The retry decision for repo reads: transient failures again with backoff, the rest classified. */
  async #retry<T>(did: string, call: () => Promise<T>): Promise<T> {
    const backoff = new Backoff({ baseMs: 500, maxMs: 10_000 })
    const attempts = this.#opts.attempts ?? 4
    for (let attempt = 1; ; attempt++) {
      try {
        return await call()
      } catch (err) {
        if (!(err instanceof PdsError)) throw err
        const status = err.error === undefined ? undefined : REPO_STATUS[err.error]
        if (status) throw new RepoUnavailableError(did, status, err.message, { cause: err })
        const rateWait = err.status === 429 ? (err.retryAt ?? Date.now()) - Date.now() : 0
        if (!err.transient || attempt >= attempts || rateWait > MAX_RATE_WAIT_MS || this.#opts.signal?.aborted) {
          const kind: RepoFailureKind = err.status === 429 ? 'rate-limited' : err.transient ? 'unreachable' : 'invalid'
          throw new RepoUnavailableError(did, kind, err.message, { cause: err })
        }
        await sleep(Math.max(rateWait, backoff.next()), this.#opts.signal)
      }
    }
  }
}

/** getRepo is missing (404/501) or the CAR is too large to hold: listRecords can still answer. */
function canList(err: PdsError): boolean {
  return err.status === 413 || err.status === 404 || err.status === 501 || err.error === 'MethodNotImplemented'
}

function decodeRecord(bytes: Uint8Array): unknown {
  try {
    return cborToLexRecord(bytes)
  } catch {
    // Kept as a non-record, so validation quarantines it with a reason instead of failing the repo.
    return null
  }
}

function handleOf(identity: { handle?: string }): { handle?: string } {
  return identity.handle === undefined ? {} : { handle: identity.handle }
}
