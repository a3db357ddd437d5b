/**
 * Benchmark 3: the firehose hot path on a stream where 1% of commits hold moods.
 *
 * A local PDS (TestNetwork) gets a backlog of one-op commits over a few accounts: 99% are
 * `app.bsky.feed.post` records, 1% are `computer.aesthetic.mood`. The whole stream is then
 * replayed from cursor 0 through
 *   ours:     our FirehoseSource.events(signal, 0), consumed until the last seq;
 *   plain:    a plain @atproto/sync Firehose, filterCollections [mood], signatures checked;
 *   proposed: a bench-only prototype of the change this benchmark argues for (see the doc):
 *             FirehoseSource plus (1) an op-path scan of the raw frame that skips foreign
 *             commits without decoding them and (2) the commit signature checked with
 *             node:crypto against a cached key instead of the pure-JS curve;
 * all three verifying every kept commit (signature and MST proof) against the PLC-resolved
 * key. A raw WebSocket drain (frames counted, nothing decoded) is the transport floor.
 *
 * Two scenarios, each with its baseline measured in the same run, rounds interleaved:
 *   pds:      straight from the PDS's subscribeRepos (the PDS runs in this process, so its own
 *             serving cost shares the cores with the consumer being measured);
 *   recorded: the same frames, captured once and served from memory by a tiny WebSocket
 *             server, so the figures are the consumer's own cost.
 *
 *   bash scripts/with-node.sh node bench/firehose-path.ts
 *   env: BENCH_COMMITS (10000), BENCH_GEN_SECONDS (90: the backlog stops growing after this),
 *        BENCH_ACCOUNTS (8), BENCH_ROUNDS (5)
 */
import { createPublicKey, verify as verifySignatureNative, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
// Not a direct dependency: the copy @atproto/repo itself uses, for did:key parsing in the prototype.
import { parseDidKey } from '@atproto/crypto'
import { IdResolver, MemoryCache } from '@atproto/identity'
import { decodeAll, encode as cborEncode } from '@atproto/lex-cbor'
import { cborToLexRecord, def, formatDataKey, MemoryBlockstore, MST, readCarWithRoot, RepoVerificationError, verifyProofs } from '@atproto/repo'
import { Firehose } from '@atproto/sync'
import WebSocket, { WebSocketServer } from 'ws'
import type { IngestEvent, RecordDelete, RecordWrite, SourceStats } from '../src/ingest/events.ts'
import { FirehoseSource } from '../src/ingest/firehose.ts'
import { createIdResolver } from '../src/app/service.ts'
import { websocketFeed } from '../src/ingest/websocket-feed.ts'
import { silentLogger } from '../src/logger.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { TestNetwork, type TestAccount } from '../rig/network.ts'
import { fmt, int, machineNote, median, progress, table, timed } from './lib-stats.ts'

const COMMITS = Number(process.env.BENCH_COMMITS ?? 10_000)
const GEN_SECONDS = Number(process.env.BENCH_GEN_SECONDS ?? 90)
const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 8)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const MOOD_EVERY = 100
const POST_NSID = 'app.bsky.feed.post'
const PREFIX = `${MOOD_NSID}/`
const REPLAY_TIMEOUT_MS = 60_000

interface Backlog {
  /** `uri cid` of every mood record written. */
  moods: Set<string>
  commits: number
  lastSeq: number
}

interface PathResult {
  /** `uri cid` of every mood op the path kept. */
  kept: Set<string>
  /** Commits the path handed on (verified). */
  keptCommits: number
  /** Signing-key look-ups: each path makes one per commit it verifies. */
  keyLookups: number
  invalid: number
  /** Gap events (our source turns each `#sync` frame into one). */
  gaps: number
  errors: string[]
}

type Consumer = (url: string, plcUrl: string, backlog: Backlog) => Promise<PathResult>

const PATHS: { key: string; label: string; run: Consumer }[] = [
  { key: 'raw', label: 'raw WebSocket drain (floor)', run: (url, _plc, b) => rawDrain(url, b.lastSeq) },
  {
    key: 'ours',
    label: 'ours: FirehoseSource (src/)',
    run: (url, plc, b) => {
      const resolver = counted(createIdResolver(plc))
      return drain(new FirehoseSource({ url, idResolver: resolver }), resolver, b)
    },
  },
  {
    key: 'proposed',
    label: 'proposed: ours + path scan + native sig',
    run: (url, plc, b) => {
      const resolver = counted(createIdResolver(plc))
      return drain(new ProposedSource(url, resolver), resolver, b)
    },
  },
  { key: 'plain', label: 'plain: @atproto/sync Firehose', run: (url, plc, b) => plain(url.replace(/\/xrpc\/.*$/, ''), plc, b) },
]

async function main(): Promise<void> {
  const machine = await machineNote()
  progress(`machine: ${machine}`)
  const network = await TestNetwork.start()
  let recorded: RecordedServer | undefined
  try {
    const accounts: TestAccount[] = []
    for (let i = 0; i < ACCOUNTS; i++) accounts.push(await network.createAccount(`bench${i}`))
    const gen = await timed(() => generate(network, accounts))
    const backlog = gen.value
    const genRate = backlog.commits / (gen.ms / 1000)
    progress(`backlog: ${backlog.commits} commits (${backlog.moods.size} moods) in ${fmt(gen.ms / 1000)} s = ${int(genRate)}/s; last seq ${backlog.lastSeq}`)

    const frames = await captureFrames(network.firehoseUrl, backlog.lastSeq)
    const bytes = frames.reduce((n, f) => n + f.length, 0)
    progress(`captured ${frames.length} frames (${fmt(bytes / 2 ** 20, 2)} MiB)`)
    const scanned = await checkScan(frames, network.plcUrl)
    progress(`path scan agrees with FirehoseSource.parseFrame on all ${frames.length} frames (${scanned} skipped by the scan)`)
    const verifyCost = await measureVerification(frames, network.plcUrl)
    progress(`verification per kept commit: verifyProofs ${fmt(verifyCost.library, 2)} ms, native ${fmt(verifyCost.native, 2)} ms`)
    recorded = await RecordedServer.start(frames)

    const scenarios = [
      { key: 'pds', url: network.firehoseUrl },
      { key: 'recorded', url: recorded.url },
    ]
    // Warm-up: JIT, module loading, the PLC's own caches.
    for (const s of scenarios) for (const p of PATHS) await p.run(s.url, network.plcUrl, backlog)

    const times = new Map<string, number[]>()
    const problems: string[] = []
    let gaps = 0
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of scenarios) {
        // Rotate the order each round, so no path always runs first (after a GC, a cold cache).
        const order = PATHS.map((_, i) => PATHS[(i + round) % PATHS.length]!)
        for (const p of order) {
          const { value, ms } = await timed(() => p.run(s.url, network.plcUrl, backlog))
          const key = `${s.key}/${p.key}`
          times.set(key, [...(times.get(key) ?? []), ms])
          progress(`round ${round + 1} ${key}: ${fmt(ms)} ms, kept ${value.kept.size}, key look-ups ${value.keyLookups}, gaps ${value.gaps}${value.errors.length ? `, errors ${value.errors.length}: ${value.errors[0]}` : ''}`)
          if (p.key === 'raw') continue
          const problem = check(key, value, backlog)
          if (problem) problems.push(problem)
          if (p.key === 'ours') gaps = value.gaps
        }
      }
    }

    const ms = (key: string) => median(times.get(key)!)
    const rows: string[][] = []
    for (const s of scenarios) {
      for (const p of PATHS) {
        const t = ms(`${s.key}/${p.key}`)
        rows.push([`${s.key}: ${p.label}`, fmt(t, 0), int(backlog.commits / (t / 1000)), fmt(ms(`${s.key}/plain`) / t, 2), fmt(t / ms(`${s.key}/raw`), 2)])
      }
    }
    const kept = backlog.moods.size
    const ceiling = (scenario: string, perCommit: number) => ms(`${scenario}/plain`) / (ms(`${scenario}/raw`) + kept * perCommit)
    const out = [
      `firehose-path: ${backlog.commits} one-op commits (generated at ${int(genRate)}/s), ${kept} moods (1 in ${MOOD_EVERY}), ${ACCOUNTS} accounts, ${frames.length} frames (${fmt(bytes / 2 ** 20, 2)} MiB), full replay from cursor 0; median of ${ROUNDS} rounds`,
      `machine: ${machine}`,
      '',
      table(['scenario: path', 'wall ms', 'commits/s', 'throughput vs plain (x)', 'time vs raw floor (x)'], rows),
      '',
      `ours/plain throughput: pds ${fmt(ms('pds/plain') / ms('pds/ours'), 2)}x, recorded ${fmt(ms('recorded/plain') / ms('recorded/ours'), 2)}x (target >= 10x); proposed/plain: pds ${fmt(ms('pds/plain') / ms('pds/proposed'), 2)}x, recorded ${fmt(ms('recorded/plain') / ms('recorded/proposed'), 2)}x`,
      `verification of one kept commit (same run, ${kept} commits x 5): @atproto/repo verifyProofs ${fmt(verifyCost.library, 2)} ms, with node:crypto signature check ${fmt(verifyCost.native, 2)} ms`,
      `ceiling for any path that verifies every kept commit = plain / (raw floor + ${kept} x verification): pds ${fmt(ceiling('pds', verifyCost.library), 1)}x with verifyProofs, ${fmt(ceiling('pds', verifyCost.native), 1)}x with native; recorded ${fmt(ceiling('recorded', verifyCost.library), 1)}x with verifyProofs, ${fmt(ceiling('recorded', verifyCost.native), 1)}x with native`,
      problems.length === 0
        ? `same mood ops: yes. ours, proposed and plain each kept exactly the ${kept} written (uri+cid) in every round, with one signing-key look-up per kept commit, nothing invalid`
        : `PROBLEMS:\n${problems.join('\n')}`,
      `gap events from ours: ${gaps} per replay (one per account creation: the PDS sequences #identity, #account, #commit and #sync for each new account, and FirehoseSource makes every #sync a gap)`,
    ]
    console.log(out.join('\n'))
    if (problems.length > 0) process.exitCode = 1
  } finally {
    await recorded?.stop()
    await network.stop()
  }
}

/** Writes the backlog: one-op applyWrites commits, one writer per account, all accounts at once. */
async function generate(network: TestNetwork, accounts: TestAccount[]): Promise<Backlog> {
  const moods = new Set<string>()
  const deadline = performance.now() + GEN_SECONDS * 1000
  let next = 0
  let done = 0
  const writer = async (account: TestAccount) => {
    while (performance.now() < deadline) {
      const i = next++
      if (i >= COMMITS) return
      const isMood = i % MOOD_EVERY === MOOD_EVERY / 2
      const now = new Date().toISOString()
      const res = await account.agent.com.atproto.repo.applyWrites({
        repo: account.did,
        writes: [
          isMood
            ? { $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, value: { $type: MOOD_NSID, mood: `bench mood ${i}`, when: now } }
            : { $type: 'com.atproto.repo.applyWrites#create', collection: POST_NSID, value: { $type: POST_NSID, text: `bench post ${i}`, createdAt: now } },
        ],
      })
      const result = res.data.results?.[0] as { uri?: string; cid?: string } | undefined
      if (isMood) {
        if (!result?.uri || !result.cid) throw new Error('applyWrites returned no uri/cid for a mood')
        moods.add(`${result.uri} ${result.cid}`)
      }
      if (++done % 1000 === 0) progress(`  ${done} commits`)
    }
  }
  await Promise.all(accounts.map(writer))
  const lastSeq = await network.net.pds.ctx.sequencer.curr()
  if (lastSeq === null) throw new Error('the PDS sequenced nothing')
  return { moods, commits: done, lastSeq }
}

/** Every frame of subscribeRepos from cursor 0 up to `lastSeq`, as sent. */
async function captureFrames(firehoseUrl: string, lastSeq: number): Promise<Buffer[]> {
  const frames: Buffer[] = []
  const ws = new WebSocket(`${firehoseUrl}?cursor=0`)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('capture timed out')), REPLAY_TIMEOUT_MS)
    ws.on('message', (data: Buffer) => {
      frames.push(data)
      const [, body] = [...decodeAll(data)] as [unknown, { seq?: number }]
      if (body?.seq !== undefined && body.seq >= lastSeq) {
        clearTimeout(timer)
        resolve()
      }
    })
    ws.on('error', reject)
  })
  ws.terminate()
  return frames
}

/** The prototype's scan must skip exactly what parseFrame skips, with the same cursor and time. */
async function checkScan(frames: readonly Buffer[], plcUrl: string): Promise<number> {
  const reference = new FirehoseSource({ url: 'ws://127.0.0.1:1/', idResolver: createIdResolver(plcUrl) })
  let skipped = 0
  for (const frame of frames) {
    const fast = scanSkip(frame)
    const full = await reference.parseFrame(frame)
    const fullSkip = full.length === 1 && full[0]!.kind === 'skip' ? full[0] : undefined
    if (fast === undefined) {
      // Not skipped by the scan: fine unless it is a foreign commit the scan should have caught.
      const [header, body] = [...decodeAll(frame)] as [{ t?: string }, { ops?: { path: string }[] }]
      if (header.t === '#commit' && fullSkip && body.ops?.length) throw new Error(`scan missed a foreign commit: ${JSON.stringify(full)}`)
      continue
    }
    if (!fullSkip || JSON.stringify(fast) !== JSON.stringify(fullSkip)) throw new Error(`scan says ${JSON.stringify(fast)}, parseFrame says ${JSON.stringify(full)}`)
    skipped++
  }
  return skipped
}

/** Times the check of each kept commit, with the library's verifyProofs and with the prototype. */
async function measureVerification(frames: readonly Buffer[], plcUrl: string): Promise<{ library: number; native: number }> {
  const resolver = createIdResolver(plcUrl)
  const commits: { did: string; blocks: Uint8Array; claims: Claim[]; key: string }[] = []
  for (const frame of frames) {
    const [header, body] = [...decodeAll(frame)] as [{ t?: string }, { repo: string; ops: { action: string; path: string; cid: unknown }[]; blocks: Uint8Array }]
    if (header.t !== '#commit') continue
    const claims = claimsOf(body.ops)
    if (claims.length === 0) continue
    commits.push({ did: body.repo, blocks: body.blocks, claims, key: await resolver.did.resolveAtprotoKey(body.repo) })
  }
  const library: number[] = []
  const native: number[] = []
  for (let round = 0; round < 5; round++) {
    let started = performance.now()
    for (const c of commits) if ((await verifyProofs(c.blocks, c.claims, c.did, c.key)).unverified.length > 0) throw new Error('verifyProofs: unverified op')
    library.push((performance.now() - started) / commits.length)
    started = performance.now()
    for (const c of commits) await verifyCommitNative(c.blocks, c.claims, c.did, c.key)
    native.push((performance.now() - started) / commits.length)
  }
  // The first round loads and compiles: drop it.
  return { library: median(library.slice(1)), native: median(native.slice(1)) }
}

/** Counts `expected` frames (by seq) and stops: the cost of the socket alone. */
async function rawDrain(url: string, lastSeq: number): Promise<PathResult> {
  const ws = new WebSocket(`${url}?cursor=0`)
  let n = 0
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`raw drain timed out at ${n}/${lastSeq}`)), REPLAY_TIMEOUT_MS)
    ws.on('message', () => {
      // The PDS numbers events from 1 without holes, one frame each.
      if (++n === lastSeq) {
        clearTimeout(timer)
        resolve()
      }
    })
    ws.on('error', reject)
  })
  ws.terminate()
  return { kept: new Set(), keptCommits: 0, keyLookups: 0, invalid: 0, gaps: 0, errors: [] }
}

const lookups = new WeakMap<IdResolver, { n: number }>()

/** Counts the resolver's signing-key look-ups: every path makes one per commit it verifies. */
function counted(resolver: IdResolver): IdResolver {
  const count = { n: 0 }
  const original = resolver.did.resolveAtprotoKey.bind(resolver.did)
  resolver.did.resolveAtprotoKey = (did: string, forceRefresh?: boolean) => {
    count.n++
    return original(did, forceRefresh)
  }
  lookups.set(resolver, count)
  return resolver
}

interface EventSource {
  events(signal: AbortSignal, from?: number): AsyncIterable<IngestEvent>
}

/** Ours and the prototype: from cursor 0 until the last seq, verification on as deployed. */
async function drain(source: EventSource, resolver: IdResolver, backlog: Backlog): Promise<PathResult> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), REPLAY_TIMEOUT_MS)
  const result: PathResult = { kept: new Set(), keptCommits: 0, keyLookups: 0, invalid: 0, gaps: 0, errors: [] }
  let last = -1
  for await (const event of source.events(abort.signal, 0)) {
    if (event.kind === 'commit') {
      result.keptCommits++
      for (const op of event.ops) {
        if (op.action === 'upsert') result.kept.add(`at://${event.did}/${MOOD_NSID}/${op.rkey} ${op.cid}`)
      }
    } else if (event.kind === 'invalid') {
      result.invalid++
      result.errors.push(event.reason)
    } else if (event.kind === 'gap') {
      result.gaps++
    }
    if (event.cursor !== undefined) last = event.cursor
    if (last >= backlog.lastSeq) break
  }
  clearTimeout(timer)
  abort.abort()
  if (last < backlog.lastSeq) result.errors.push(`stopped at seq ${last} of ${backlog.lastSeq}`)
  result.keyLookups = lookups.get(resolver)?.n ?? 0
  return result
}

/**
 * plain: @atproto/sync Firehose with filterCollections [mood], signatures and MST proofs
 * checked (unauthenticatedCommits false). handleEvent sees kept ops only, so the end is the
 * moment the known number of mood ops has arrived. Handles are not verified
 * (unauthenticatedHandles): `.test` handles do not resolve, and our source does not verify
 * handles either.
 */
async function plain(service: string, plcUrl: string, backlog: Backlog): Promise<PathResult> {
  const idResolver = counted(new IdResolver({ plcUrl, fetch: globalThis.fetch, didCache: new MemoryCache() }))
  const result: PathResult = { kept: new Set(), keptCommits: 0, keyLookups: 0, invalid: 0, gaps: 0, errors: [] }
  const commits = new Set<string>()
  let finish: () => void = () => {}
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const firehose = new Firehose({
    service,
    idResolver,
    filterCollections: [MOOD_NSID],
    unauthenticatedCommits: false,
    unauthenticatedHandles: true,
    getCursor: () => 0,
    handleEvent: (evt) => {
      if (evt.event === 'create' || evt.event === 'update') {
        commits.add(`${evt.did} ${evt.seq}`)
        result.kept.add(`${evt.uri.toString()} ${evt.cid.toString()}`)
        if (result.kept.size >= backlog.moods.size) finish()
      }
    },
    onError: (err) => {
      result.errors.push(`${err.message}: ${(err.cause as Error | undefined)?.message ?? ''}`)
    },
  })
  void firehose.start()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([finished, new Promise((resolve) => (timer = setTimeout(resolve, REPLAY_TIMEOUT_MS)))])
  clearTimeout(timer)
  result.keptCommits = commits.size
  result.keyLookups = lookups.get(idResolver)?.n ?? 0
  await firehose.destroy()
  return result
}

function check(key: string, r: PathResult, backlog: Backlog): string {
  const problems: string[] = []
  const missing = [...backlog.moods].filter((m) => !r.kept.has(m))
  const extra = [...r.kept].filter((m) => !backlog.moods.has(m))
  if (missing.length > 0) problems.push(`${missing.length} mood ops missing (e.g. ${missing[0]})`)
  if (extra.length > 0) problems.push(`${extra.length} unexpected ops (e.g. ${extra[0]})`)
  if (r.keptCommits !== backlog.moods.size) problems.push(`${r.keptCommits} kept commits, expected ${backlog.moods.size}`)
  if (r.keyLookups < r.keptCommits) problems.push(`only ${r.keyLookups} key look-ups for ${r.keptCommits} kept commits: not every commit was verified`)
  if (r.invalid > 0 || r.errors.length > 0) problems.push(`${r.invalid} invalid, errors: ${r.errors.slice(0, 3).join('; ')}`)
  return problems.length === 0 ? '' : `${key}: ${problems.join('; ')}`
}

/** Serves captured frames to every subscriber, whatever the path or cursor, with backpressure. */
class RecordedServer {
  readonly #wss: WebSocketServer
  readonly #http: ReturnType<typeof createServer>

  private constructor(http: ReturnType<typeof createServer>, wss: WebSocketServer) {
    this.#http = http
    this.#wss = wss
  }

  static async start(frames: readonly Buffer[]): Promise<RecordedServer> {
    const http = createServer((_req, res) => res.writeHead(404).end())
    const wss = new WebSocketServer({ server: http })
    wss.on('connection', (ws) => {
      ws.on('error', () => {})
      void (async () => {
        for (let i = 0; i < frames.length; i++) {
          if (ws.readyState !== WebSocket.OPEN) return
          if (i % 64 === 63) await new Promise((resolve) => ws.send(frames[i]!, { binary: true }, resolve))
          else ws.send(frames[i]!, { binary: true })
        }
      })()
    })
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
    return new RecordedServer(http, wss)
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.#http.address() as AddressInfo).port}/xrpc/com.atproto.sync.subscribeRepos`
  }

  async stop(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate()
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()))
    this.#http.closeAllConnections()
    await new Promise<void>((resolve) => this.#http.close(() => resolve()))
  }
}

// ---------------------------------------------------------------------------------------------
// The proposed change, prototyped for measurement only (src/ is not touched). Two parts:
//  1. scanSkip: read a #commit frame's header, seq, time and op paths straight from the CBOR
//     bytes, skipping the blocks and CIDs without decoding them; a commit with no op on our
//     collection becomes a skip. Anything else (ours, other frame types, anything unexpected)
//     goes to FirehoseSource.parseFrame unchanged.
//  2. verifyCommitNative: verifyProofs' checks (commit DID, signature, MST inclusion of every
//     claim) with the signature checked by node:crypto (OpenSSL) against a KeyObject cached
//     per did:key, low-S enforced as @atproto/crypto does, instead of @noble/curves in pure JS,
//     which also re-parses (decompresses) the key on every call.
// ---------------------------------------------------------------------------------------------

class ProposedSource implements EventSource {
  readonly stats: SourceStats = { connected: false, reconnects: 0, framesReceived: 0 }
  readonly #url: string
  readonly #resolver: IdResolver
  readonly #fallback: FirehoseSource

  constructor(url: string, resolver: IdResolver) {
    this.#url = url
    this.#resolver = resolver
    this.#fallback = new FirehoseSource({ url, idResolver: resolver })
  }

  async *events(signal: AbortSignal, from?: number): AsyncGenerator<IngestEvent> {
    let cursor = from
    const url = () => {
      const u = new URL(this.#url)
      if (cursor !== undefined) u.searchParams.set('cursor', String(cursor))
      return u.toString()
    }
    for await (const message of websocketFeed({ url, signal, stats: this.stats, log: silentLogger })) {
      const skip = scanSkip(message.data)
      const events = skip ? [skip] : ((await this.#ours(message.data)) ?? (await this.#fallback.parseFrame(message.data)))
      for (const event of events) {
        if (event.cursor !== undefined) cursor = event.cursor
        yield event
      }
    }
  }

  /** A well-formed #commit touching our collection, verified natively; undefined for anything else. */
  async #ours(bytes: Uint8Array): Promise<IngestEvent[] | undefined> {
    let header: { t?: unknown; op?: unknown }
    let body: { seq?: unknown; repo?: unknown; rev?: unknown; ops?: unknown; blocks?: unknown; time?: unknown }
    try {
      ;[header, body] = [...decodeAll(bytes)] as [typeof header, typeof body]
    } catch {
      return undefined
    }
    if (header?.op !== 1 || header.t !== '#commit' || !Number.isSafeInteger(body?.seq) || typeof body.repo !== 'string' || typeof body.rev !== 'string' || !Array.isArray(body.ops) || !(body.blocks instanceof Uint8Array)) return undefined
    const seq = body.seq as number
    const did = body.repo
    const ops = (body.ops as { action?: string; path?: unknown; cid?: { toString(): string } | null }[]).filter((op) => typeof op?.path === 'string' && op.path.startsWith(PREFIX))
    if (ops.length === 0) return undefined
    if (ops.some((op) => op.action !== 'delete' && (op.action !== 'create' && op.action !== 'update' || !op.cid))) return undefined
    const emittedAt = typeof body.time === 'string' ? Date.parse(body.time) : undefined
    const claims = claimsOf(ops as { action: string; path: string; cid: unknown }[])
    let blocks: Awaited<ReturnType<typeof verifyCommitNative>>
    try {
      blocks = await this.#verify(did, body.blocks, claims)
    } catch (err) {
      return ops.map((op) => ({ kind: 'invalid' as const, cursor: seq, did, rkey: (op.path as string).slice(PREFIX.length), reason: `commit verification failed: ${(err as Error).message}` }))
    }
    const writes: (RecordWrite | RecordDelete)[] = []
    const result: IngestEvent[] = []
    for (const op of ops) {
      const rkey = (op.path as string).slice(PREFIX.length)
      if (op.action === 'delete') {
        writes.push({ action: 'delete', rkey })
        continue
      }
      try {
        const record = blocks.get(op.cid as never)
        if (!record) throw new Error('record block missing from the commit')
        writes.push({ action: 'upsert', rkey, cid: op.cid!.toString(), record: cborToLexRecord(record) })
      } catch (err) {
        result.push({ kind: 'invalid', cursor: seq, did, rkey, cid: op.cid!.toString(), reason: `record could not be decoded: ${(err as Error).message}` })
      }
    }
    if (writes.length > 0) result.push({ kind: 'commit', cursor: seq, did, rev: body.rev, ops: writes, emittedAt })
    return result
  }

  async #verify(did: string, blocks: Uint8Array, claims: Claim[]) {
    for (const forceRefresh of [false, true]) {
      const key = await this.#resolver.did.resolveAtprotoKey(did, forceRefresh)
      try {
        return await verifyCommitNative(blocks, claims, did, key)
      } catch (err) {
        if (!(err instanceof RepoVerificationError) || forceRefresh) throw err
      }
    }
    throw new Error('unreachable')
  }
}

interface Claim {
  collection: string
  rkey: string
  cid: never
}

function claimsOf(ops: readonly { action: string; path: string; cid: unknown }[]): Claim[] {
  return ops
    .filter((op) => typeof op.path === 'string' && op.path.startsWith(PREFIX))
    .map((op) => ({ collection: MOOD_NSID, rkey: op.path.slice(PREFIX.length), cid: (op.action === 'delete' ? null : op.cid) as never }))
}

/** SubjectPublicKeyInfo DER prefixes for an uncompressed EC point, by JWT alg. */
const SPKI_PREFIX: Record<string, Buffer> = {
  ES256K: Buffer.from('3056301006072a8648ce3d020106052b8104000a034200', 'hex'),
  ES256: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'),
}
/** Half the group order: a signature's s above it is the malleable twin, refused as noble's lowS does. */
const HALF_ORDER: Record<string, bigint> = {
  ES256K: 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n,
  ES256: 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8n,
}
const keyObjects = new Map<string, { key: KeyObject; halfOrder: bigint }>()

/** A did:key as a node:crypto public key, parsed (point decompressed) once. */
function keyObject(didKey: string): { key: KeyObject; halfOrder: bigint } {
  let entry = keyObjects.get(didKey)
  if (!entry) {
    const { jwtAlg, keyBytes } = parseDidKey(didKey)
    const prefix = SPKI_PREFIX[jwtAlg]
    const halfOrder = HALF_ORDER[jwtAlg]
    if (!prefix || halfOrder === undefined) throw new RepoVerificationError(`unsupported signing key type ${jwtAlg}`)
    entry = { key: createPublicKey({ key: Buffer.concat([prefix, keyBytes]), format: 'der', type: 'spki' }), halfOrder }
    keyObjects.set(didKey, entry)
  }
  return entry
}

/** A compact (r, s) ECDSA signature over sha256(data), low-S only, as @atproto/crypto requires. */
function signatureValid(didKey: string, data: Uint8Array, sig: Uint8Array): boolean {
  const { key, halfOrder } = keyObject(didKey)
  if (sig.length !== 64) return false
  if (BigInt(`0x${Buffer.from(sig.buffer, sig.byteOffset + 32, 32).toString('hex')}`) > halfOrder) return false
  return verifySignatureNative('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
}

/** verifyProofs' checks with the signature checked natively; returns the commit's blocks. */
async function verifyCommitNative(blocks: Uint8Array, claims: readonly Claim[], did: string, didKey: string) {
  const car = await readCarWithRoot(blocks)
  const store = new MemoryBlockstore(car.blocks)
  const commit = await store.readObj(car.root, def.commit)
  if (commit.did !== did) throw new RepoVerificationError(`Invalid repo did: ${commit.did}`)
  const { sig, ...unsigned } = commit
  if (!signatureValid(didKey, cborEncode(unsigned as never), sig)) throw new RepoVerificationError(`Invalid signature on commit: ${car.root.toString()}`)
  const mst = MST.load(store, commit.data)
  for (const claim of claims) {
    const found = await mst.get(formatDataKey(claim.collection, claim.rkey))
    const ok = claim.cid === null ? found === null : found !== null && found.equals(claim.cid)
    if (!ok) throw new RepoVerificationError(`op not proven by the commit: ${claim.collection}/${claim.rkey}`)
  }
  return car.blocks
}

const ascii = (text: string) => Buffer.from(text, 'latin1')
const K_T = ascii('t')
const K_OP = ascii('op')
const K_SEQ = ascii('seq')
const K_OPS = ascii('ops')
const K_PATH = ascii('path')
const K_TIME = ascii('time')
const K_REPO = ascii('repo')
const K_REV = ascii('rev')
const T_COMMIT = ascii('#commit')
const PREFIX_BYTES = ascii(PREFIX)

/** A CBOR head at p: [major type, argument, next position]; null where DAG-CBOR has none (indefinite, > 2^53). */
function head(b: Uint8Array, p: number): [number, number, number] | null {
  const ib = b[p]
  if (ib === undefined) return null
  const major = ib >> 5
  const ai = ib & 31
  if (ai < 24) return [major, ai, p + 1]
  if (ai > 27 || p + 1 + 2 ** (ai - 24) > b.length) return null
  if (ai === 24) return [major, b[p + 1]!, p + 2]
  if (ai === 25) return [major, (b[p + 1]! << 8) | b[p + 2]!, p + 3]
  if (ai === 26) return [major, b[p + 1]! * 2 ** 24 + ((b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!), p + 5]
  if (ai === 27) {
    const high = b[p + 1]! * 2 ** 24 + ((b[p + 2]! << 16) | (b[p + 3]! << 8) | b[p + 4]!)
    const low = b[p + 5]! * 2 ** 24 + ((b[p + 6]! << 16) | (b[p + 7]! << 8) | b[p + 8]!)
    const value = high * 2 ** 32 + low
    return Number.isSafeInteger(value) ? [major, value, p + 9] : null
  }
  return null
}

/** The position after the item at p, or -1. */
function skipItem(b: Uint8Array, p: number): number {
  const h = head(b, p)
  if (!h) return -1
  const [major, arg, next] = h
  switch (major) {
    case 0:
    case 1:
    case 7:
      return next
    case 2:
    case 3:
      return next + arg <= b.length ? next + arg : -1
    case 4:
    case 5: {
      let q = next
      for (let i = 0; i < (major === 5 ? 2 * arg : arg) && q >= 0; i++) q = skipItem(b, q)
      return q
    }
    case 6:
      return skipItem(b, next)
    default:
      return -1
  }
}

/** The text string at p: [start, length, next position] or null. */
function text(b: Uint8Array, p: number): [number, number, number] | null {
  const h = head(b, p)
  if (!h || h[0] !== 3 || h[2] + h[1] > b.length) return null
  return [h[2], h[1], h[2] + h[1]]
}

function bytesAre(b: Uint8Array, start: number, len: number, want: Uint8Array, prefixOnly = false): boolean {
  if (prefixOnly ? len < want.length : len !== want.length) return false
  for (let i = 0; i < want.length; i++) if (b[start + i] !== want[i]) return false
  return true
}

/** A #commit frame none of whose ops is on our collection, as a skip; undefined otherwise. */
function scanSkip(b: Uint8Array): IngestEvent | undefined {
  const header = head(b, 0)
  if (!header || header[0] !== 5) return undefined
  let p = header[2]
  let commit = false
  let message = false
  for (let i = 0; i < header[1]; i++) {
    const key = text(b, p)
    if (!key) return undefined
    if (bytesAre(b, key[0], key[1], K_T)) {
      const t = text(b, key[2])
      if (!t) return undefined
      commit = bytesAre(b, t[0], t[1], T_COMMIT)
      p = t[2]
    } else if (bytesAre(b, key[0], key[1], K_OP)) {
      const op = head(b, key[2])
      if (!op) return undefined
      message = op[0] === 0 && op[1] === 1
      p = op[2]
    } else {
      p = skipItem(b, key[2])
      if (p < 0) return undefined
    }
  }
  if (!commit || !message) return undefined
  const body = head(b, p)
  if (!body || body[0] !== 5) return undefined
  p = body[2]
  let seq: number | undefined
  let time: string | undefined
  let hasOps = false
  let hasRepo = false
  let hasRev = false
  for (let i = 0; i < body[1]; i++) {
    const key = text(b, p)
    if (!key) return undefined
    const [ks, kl, value] = key
    if (bytesAre(b, ks, kl, K_SEQ)) {
      const v = head(b, value)
      if (!v || v[0] !== 0) return undefined
      seq = v[1]
      p = v[2]
    } else if (bytesAre(b, ks, kl, K_TIME)) {
      const v = text(b, value)
      if (!v) return undefined
      time = Buffer.from(b.buffer, b.byteOffset + v[0], v[1]).toString('utf8')
      p = v[2]
    } else if (bytesAre(b, ks, kl, K_OPS)) {
      const list = head(b, value)
      if (!list || list[0] !== 4) return undefined
      hasOps = true
      p = list[2]
      for (let j = 0; j < list[1]; j++) {
        const op = head(b, p)
        if (!op || op[0] !== 5) return undefined
        p = op[2]
        for (let e = 0; e < op[1]; e++) {
          const k = text(b, p)
          if (!k) return undefined
          if (bytesAre(b, k[0], k[1], K_PATH)) {
            const path = text(b, k[2])
            if (!path) return undefined
            if (bytesAre(b, path[0], path[1], PREFIX_BYTES, true)) return undefined // ours: the full path
            p = path[2]
          } else {
            p = skipItem(b, k[2])
            if (p < 0) return undefined
          }
        }
      }
    } else {
      if (bytesAre(b, ks, kl, K_REPO)) hasRepo = true
      else if (bytesAre(b, ks, kl, K_REV)) hasRev = true
      p = skipItem(b, value)
      if (p < 0) return undefined
    }
  }
  // Malformed commits go to the full parser, which says what is wrong with them.
  if (seq === undefined || !hasOps || !hasRepo || !hasRev || p !== b.length) return undefined
  return { kind: 'skip', cursor: seq, emittedAt: time === undefined ? undefined : Date.parse(time) }
}

await main()
