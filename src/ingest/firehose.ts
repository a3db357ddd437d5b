import { decodeAll } from '@atproto/lex-cbor'
import type { IdResolver } from '@atproto/identity'
import { cborToLexRecord, readCarWithRoot } from '@atproto/repo'
import { CommitProofError, proveCommit, type Claim } from '../atproto/commit-proof.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { Backoff } from '../retry.ts'
import { truncate, type IngestEvent, type RecordDelete, type RecordWrite, type SavedPosition, type Source, type SourceStats } from './events.ts'
import { emptyScan, FrameScanner, hashDid } from './firehose-scan.ts'
import { RepoChain } from './repo-chain.ts'
import { Watermark } from './watermark.ts'
import { websocketFeed } from './websocket-feed.ts'

export interface FirehoseSourceOptions {
  /** A relay's or PDS's `com.atproto.sync.subscribeRepos` endpoint. */
  url: string
  /** The NSIDs to keep (moods by default); commits touching none of them are skipped unread. */
  collections?: readonly string[]
  /** Resolves each DID's signing key (cached); every kept commit is verified against it. */
  idResolver: IdResolver
  log?: Logger
  backoff?: Backoff
  highWater?: number
  /** A connection silent this long (no frame, no pong) is dropped and reopened (websocket-feed.ts). */
  idleTimeoutMs?: number
  /** Repos whose commit chain is followed at most (least recently seen first out). */
  maxChainRepos?: number
}

interface RepoOp {
  action: string
  path: string
  cid?: { toString(): string } | null
}

function bytesOf(frame: Uint8Array): Buffer {
  return Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
}

function latin1(frame: Uint8Array, range: readonly [number, number]): string {
  return bytesOf(frame).toString('latin1', range[0], range[1])
}

/** The CID of an MST with no entries: the data root of every new repo. */
const EMPTY_MST = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'

async function isEmptyRepo(blocks: unknown): Promise<boolean> {
  if (!(blocks instanceof Uint8Array)) return false
  try {
    const car = await readCarWithRoot(blocks)
    const commit = cborToLexRecord(car.blocks.get(car.root) as Uint8Array) as { data?: { toString(): string } }
    return commit.data?.toString() === EMPTY_MST
  } catch {
    return false
  }
}

/**
 * `subscribeRepos` frames to events. A commit's op paths say whether it touches our collections
 * before anything else is decoded (firehose-scan.ts), so the (large majority of) commits that
 * do not are skipped without decoding them, and a run of them becomes one skip event. Those
 * that do are verified (signature and MST proofs) and only then decoded. The repos we index
 * have their sync 1.1 chain followed (repo-chain.ts): a commit that does not follow on from
 * the last one queues that repo for a resync.
 */
export class FirehoseSource implements Source {
  readonly id = 'firehose'
  readonly instance: string
  /**
   * `verifiedCommits`: commits whose signature and proofs were checked (every one kept);
   * `chainBreaks`: commits that did not follow on from their repo's last one.
   */
  readonly stats: SourceStats & { verifiedCommits: number; chainBreaks: number } = { connected: false, reconnects: 0, framesReceived: 0, verifiedCommits: 0, chainBreaks: 0 }
  readonly #opts: FirehoseSourceOptions
  readonly #log: Logger
  /** `nsid/`, one per collection kept. */
  readonly #prefixes: readonly string[]
  readonly #scanner: FrameScanner
  readonly #scan = emptyScan()
  readonly #chain: RepoChain

  constructor(opts: FirehoseSourceOptions) {
    this.#opts = opts
    this.#prefixes = (opts.collections ?? [MOOD_NSID]).map((nsid) => `${nsid}/`)
    this.#scanner = new FrameScanner(this.#prefixes)
    this.#chain = new RepoChain(hashDid, opts.maxChainRepos)
    this.#log = (opts.log ?? silentLogger).child({ component: 'firehose' })
    this.instance = opts.url
  }

  async *events(signal: AbortSignal, from?: SavedPosition): AsyncGenerator<IngestEvent[]> {
    let cursor = from?.cursor
    if (from?.instance !== undefined && from.instance !== this.instance) {
      // Sequence numbers are each relay's own: the saved one means nothing here.
      cursor = undefined
      yield [{ kind: 'gap', reason: `moved from ${from.instance} to ${this.instance}: firehose sequence numbers do not carry over`, requested: from.cursor }]
    }
    const liveness = new Watermark({ timeCursors: false })
    const url = () => {
      const u = new URL(this.#opts.url)
      liveness.connecting(cursor !== undefined)
      if (cursor !== undefined) u.searchParams.set('cursor', String(cursor))
      return u.toString()
    }
    const feed = { url, signal, stats: this.stats, log: this.#log, backoff: this.#opts.backoff, highWater: this.#opts.highWater, idleTimeoutMs: this.#opts.idleTimeoutMs, heartbeats: true }
    for await (const messages of websocketFeed(feed)) {
      const out: IngestEvent[] = []
      let frames: Buffer[] = []
      const parse = async () => {
        if (frames.length === 0) return
        for (const event of await this.parseFrames(frames)) {
          if (event.cursor !== undefined) cursor = event.cursor
          liveness.delivered('emittedAt' in event ? event.emittedAt : undefined)
          out.push(event)
        }
        frames = []
      }
      for (const message of messages) {
        if (message.heartbeat === undefined) {
          frames.push(message.data)
          continue
        }
        await parse()
        const beat = liveness.heartbeat(message.heartbeat)
        if (beat) out.push(beat)
      }
      await parse()
      if (out.length > 0) yield out
    }
  }

  /**
   * Frames, in stream order, to events. A run of foreign commits becomes one skip (its last
   * seq and time, and how many). Never throws: bad input becomes `invalid`.
   */
  async parseFrames(frames: readonly Uint8Array[]): Promise<IngestEvent[]> {
    const out: IngestEvent[] = []
    let skipped = 0
    let skipSeq = 0
    let skipFrame: Uint8Array | undefined
    let skipTimeStart = -1
    let skipTimeEnd = -1
    const flushSkips = () => {
      if (skipped === 0) return
      const emittedAt = skipTimeStart < 0 ? Number.NaN : Date.parse(latin1(skipFrame!, [skipTimeStart, skipTimeEnd]))
      out.push({ kind: 'skip', cursor: skipSeq, ...(Number.isNaN(emittedAt) ? {} : { emittedAt }), ...(skipped > 1 ? { count: skipped } : {}) })
      skipped = 0
    }
    const scan = this.#scan
    for (const frame of frames) {
      if (this.#scanner.scanCommit(frame, scan) && !scan.ours) {
        const resync = this.#chain.mayHave(scan.repoHash) ? this.#followForeign(frame) : undefined
        if (resync) {
          flushSkips()
          out.push(resync)
          continue
        }
        // A run only goes forward: a seq that does not is another stream's (a replay), not more of this one.
        if (skipped > 0 && scan.seq <= skipSeq) flushSkips()
        skipped++
        skipSeq = scan.seq
        skipFrame = frame
        skipTimeStart = scan.time[0]
        skipTimeEnd = scan.time[1]
        continue
      }
      flushSkips()
      for (const event of await this.parseFrame(frame)) out.push(event)
    }
    flushSkips()
    return out
  }

  /**
   * A foreign commit of a repo whose chain we follow: its links are read from the bytes, not
   * verified (a forged one could only cause a resync, and a resync reads and verifies the
   * repo itself). A resync event when it breaks the chain.
   */
  #followForeign(frame: Uint8Array): IngestEvent | undefined {
    const scan = this.#scan
    const did = latin1(frame, scan.repo)
    if (!this.#chain.has(did)) return undefined
    const text = (range: [number, number]) => (range[0] < 0 ? undefined : latin1(frame, range))
    const hex = (range: [number, number]) => (range[0] < 0 ? undefined : bytesOf(frame).toString('hex', range[0], range[1]))
    const data = scan.blocks[0] < 0 || scan.commit[0] < 0 ? undefined : this.#scanner.commitData(frame, scan.blocks, scan.commit)
    const broken = this.#chain.advance(did, { rev: text(scan.rev)!, since: text(scan.since), prevData: hex(scan.prevData), data })
    return broken === undefined ? undefined : this.#chainBreak(scan.seq, did, broken)
  }

  #chainBreak(seq: number, did: string, reason: string): IngestEvent {
    this.stats.chainBreaks++
    this.#log.warn({ did, seq, reason }, 'repo chain broken: queued for a resync')
    return { kind: 'resync', cursor: seq, did, reason: `chain break: ${reason}` }
  }

  /** One binary frame to events. Never throws: bad input becomes `invalid`. */
  async parseFrame(bytes: Uint8Array): Promise<IngestEvent[]> {
    let header: Record<string, unknown>
    let body: Record<string, unknown>
    try {
      const items: unknown[] = [...decodeAll(bytes)]
      if (items.length !== 2) throw new Error(`expected 2 CBOR items, got ${items.length}`)
      header = items[0] as Record<string, unknown>
      body = items[1] as Record<string, unknown>
      if (typeof header !== 'object' || header === null || typeof body !== 'object' || body === null) throw new Error('header or body is not a map')
    } catch (err) {
      return [{ kind: 'invalid', reason: `malformed CBOR frame: ${(err as Error).message}`, raw: truncate(Buffer.from(bytes).toString('hex')) }]
    }
    if (header.op === -1) {
      this.#log.warn({ error: body.error, message: body.message }, 'firehose error frame')
      if (body.error === 'FutureCursor' || body.error === 'OutdatedCursor') {
        return [{ kind: 'gap', reason: `firehose refused the cursor: ${String(body.error)} ${String(body.message ?? '')}`.trim() }]
      }
      return []
    }
    const seq = Number.isSafeInteger(body.seq) ? (body.seq as number) : undefined
    const did = typeof body.repo === 'string' ? body.repo : typeof body.did === 'string' ? body.did : undefined
    const emittedAt = typeof body.time === 'string' ? Date.parse(body.time) : undefined

    switch (header.t) {
      case '#commit':
        if (seq === undefined || did === undefined || typeof body.rev !== 'string' || !Array.isArray(body.ops)) {
          return [{ kind: 'invalid', cursor: seq, did, reason: 'commit frame lacks seq, repo, rev or ops' }]
        }
        return this.#commit(seq, did, body, emittedAt)
      case '#account':
        if (seq === undefined || did === undefined || typeof body.active !== 'boolean') {
          return [{ kind: 'invalid', cursor: seq, did, reason: 'account frame lacks seq, did or active' }]
        }
        return [{ kind: 'account', cursor: seq, did, active: body.active, ...(typeof body.status === 'string' ? { status: body.status } : {}), emittedAt }]
      case '#identity':
        if (seq === undefined || did === undefined) return [{ kind: 'invalid', cursor: seq, did, reason: 'identity frame lacks seq or did' }]
        return [{ kind: 'identity', cursor: seq, did, ...(typeof body.handle === 'string' ? { handle: body.handle } : {}), emittedAt }]
      case '#sync':
        // The repo was reset to a new state without a diff: only a backfill can tell what changed.
        if (seq === undefined || did === undefined) return [{ kind: 'invalid', cursor: seq, did, reason: 'sync frame lacks seq or did' }]
        this.#chain.forget(did)
        // Every new account announces its empty repo this way: nothing to catch up on.
        if (await isEmptyRepo(body.blocks)) return [{ kind: 'skip', cursor: seq, emittedAt }]
        return [{ kind: 'resync', cursor: seq, did, reason: 'repo sync event: state replaced without a diff' }]
      case '#info':
        if (body.name === 'OutdatedCursor') {
          return [{ kind: 'gap', reason: `firehose: OutdatedCursor${body.message ? ` (${String(body.message)})` : ''}` }]
        }
        return []
      default:
        return seq === undefined ? [] : [{ kind: 'skip', cursor: seq, emittedAt }]
    }
  }

  async #commit(seq: number, did: string, body: Record<string, unknown>, emittedAt?: number): Promise<IngestEvent[]> {
    const rev = body.rev as string
    const ours: { op: RepoOp; collection: string; rkey: string }[] = []
    for (const op of body.ops as RepoOp[]) {
      if (typeof op?.path !== 'string') continue
      const prefix = this.#prefixes.find((p) => op.path.startsWith(p))
      if (prefix !== undefined) ours.push({ op, collection: prefix.slice(0, -1), rkey: op.path.slice(prefix.length) })
    }
    if (ours.length === 0) return [{ kind: 'skip', cursor: seq, emittedAt }]
    const blocks = body.blocks
    if (!(blocks instanceof Uint8Array)) return [{ kind: 'invalid', cursor: seq, did, reason: 'commit frame has no blocks' }]

    const claims: Claim[] = ours.map(({ op, collection, rkey }) => ({ collection, rkey, cid: op.action === 'delete' ? null : ((op.cid ?? null) as never) }))
    let proven: Awaited<ReturnType<typeof proveCommit>>
    try {
      proven = await this.#verify(did, blocks, claims)
    } catch (err) {
      return ours.map(({ rkey }) => ({ kind: 'invalid' as const, cursor: seq, did, rkey, reason: `commit verification failed: ${(err as Error).message}` }))
    }

    const result: IngestEvent[] = []
    const writes: (RecordWrite | RecordDelete)[] = []
    for (const { op, collection, rkey } of ours) {
      if (op.action === 'delete') {
        writes.push({ action: 'delete', collection, rkey })
        continue
      }
      if ((op.action !== 'create' && op.action !== 'update') || !op.cid) {
        result.push({ kind: 'invalid', cursor: seq, did, rkey, reason: `unknown op action ${JSON.stringify(op.action)} or no cid` })
        continue
      }
      try {
        const bytes = proven.blocks.get(op.cid as never)
        if (!bytes) throw new Error('record block missing from the commit')
        writes.push({ action: 'upsert', collection, rkey, cid: op.cid.toString(), record: cborToLexRecord(bytes) })
      } catch (err) {
        result.push({ kind: 'invalid', cursor: seq, did, rkey, cid: op.cid.toString(), reason: `record could not be decoded: ${(err as Error).message}` })
      }
    }
    if (writes.length > 0) result.push({ kind: 'commit', cursor: seq, did, rev, ops: writes, emittedAt })
    else if (result.length === 0) result.push({ kind: 'skip', cursor: seq, emittedAt })
    // The ops are proven whatever came before; a break means others may have been missed.
    const prevData = body.prevData as { bytes?: Uint8Array } | null | undefined
    const broken = this.#chain.advance(did, {
      rev,
      since: typeof body.since === 'string' ? body.since : undefined,
      prevData: prevData?.bytes instanceof Uint8Array ? Buffer.from(prevData.bytes).toString('hex') : undefined,
      data: Buffer.from(proven.data.bytes).toString('hex'),
    })
    if (broken !== undefined) result.push(this.#chainBreak(seq, did, broken))
    return result
  }

  /** Checks the commit signature and that each claimed op is what the MST proves. */
  async #verify(did: string, blocks: Uint8Array, claims: readonly Claim[]): ReturnType<typeof proveCommit> {
    for (const forceRefresh of [false, true]) {
      const key = await this.#opts.idResolver.did.resolveAtprotoKey(did, forceRefresh)
      try {
        const proven = await proveCommit(blocks, did, key, claims)
        this.stats.verifiedCommits++
        return proven
      } catch (err) {
        // A rotated key makes the cached one fail: refresh once before calling it invalid.
        if (!(err instanceof CommitProofError && err.badSignature) || forceRefresh) throw err
      }
    }
    throw new Error('unreachable')
  }
}
