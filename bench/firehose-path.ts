/**
 * The firehose hot path on a stream where 1% of commits hold moods: our FirehoseSource against
 * a plain @atproto/sync Firehose (filterCollections [mood]), both verifying every kept commit
 * (signature and MST proofs) against the PLC-resolved key; a raw WebSocket drain (frames
 * counted, nothing decoded) is the transport floor.
 *
 *   node bench/firehose-path.ts [--commits 10000] [--gen-seconds 90] [--accounts 8] [--rounds 5] [--tiny]
 *
 * A local PDS (TestNetwork) gets a backlog of one-op commits from a few accounts at once: 99%
 * `app.bsky.feed.post`, 1% `computer.aesthetic.mood`, which Bluesky's relay (rig/relay.ts)
 * re-verifies and serves, as production reads the network. Each path then replays the backlog
 * in two scenarios: `relay`, straight from the relay's subscribeRepos (its own process, sharing
 * the cores), and `recorded`, the relay's frames captured once and served by the bench's frame
 * server on a worker thread (the consumer's own cost).
 */
import { IdResolver, MemoryCache } from '@atproto/identity'
import { Firehose } from '@atproto/sync'
import WebSocket from 'ws'
import { createIdResolver } from '../src/atproto/identity.ts'
import { FirehoseSource } from '../src/ingest/firehose.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { clientRef, TestNetwork, type TestAccount } from '../rig/network.ts'
import { RelayServer } from '../rig/relay.ts'
import { fmt, int, knobs, median, pairedRatio, progress, ratio, rounds, script, timed, type Result, type RunOptions, type Sample } from './lib/report.ts'
import { firehoseTap, startFrameServer, type FrameServer } from './lib/servers.ts'

const SIZES = {
  tiny: { commits: 60, moodEvery: 10, accounts: 2, genSeconds: 30, rounds: 1 },
  full: { commits: 10_000, moodEvery: 100, accounts: 8, genSeconds: 90, rounds: 5 },
}
const POST_NSID = 'app.bsky.feed.post'
const TIMEOUT_MS = 60_000

export const PATHS = { raw: 'raw WebSocket drain (floor)', ours: 'ours: FirehoseSource (src/)', plain: 'plain: @atproto/sync Firehose' } as const
export const SCENARIOS = ['relay', 'recorded'] as const

interface Backlog {
  /** `at://did/collection/rkey cid` of every mood written. */
  moods: Set<string>
  commits: number
  /** The relay's seq before the backlog (replays start after it) and the last one. */
  from: number
  lastSeq: number
  /** The relay's frames from `from` (exclusive) to `lastSeq`: it numbers its stream with gaps. */
  frames: number
}

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const o = knobs(opts, SIZES)
  const network = await TestNetwork.start()
  let relay: RelayServer | undefined
  let recorded: FrameServer | undefined
  try {
    const accounts: TestAccount[] = []
    for (let i = 0; i < o.accounts; i++) accounts.push(await network.createAccount(`fh${i}`))
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    const from = await relayIsLive(relay, accounts[0]!)
    const gen = await timed(() => generate(accounts, o))
    const backlog = { ...gen.value, from }
    // The relay's own numbering: its frames after the probe, until every commit has come.
    const frames: Buffer[] = []
    let tap: ReturnType<typeof firehoseTap> | undefined
    let seen = 0
    await within('the capture', (done) => {
      tap = firehoseTap(`${relay!.firehoseUrl}?cursor=${from}`, (frame, data) => {
        frames.push(data)
        backlog.lastSeq = Math.max(backlog.lastSeq, frame.seq ?? 0)
        if (frame.t === '#commit' && frame.ops?.some((op) => op.path?.startsWith(`${MOOD_NSID}/`) || op.path?.startsWith(`${POST_NSID}/`)) && ++seen >= backlog.commits) done()
      })
    })
    tap?.close()
    backlog.frames = frames.length
    progress(`backlog: ${backlog.commits} commits (${backlog.moods.size} moods) in ${fmt(gen.ms / 1000)} s; relay seqs ${backlog.from + 1}..${backlog.lastSeq}, ${frames.length} frames`)
    recorded = await startFrameServer(frames, { where: 'thread', path: '/xrpc/com.atproto.sync.subscribeRepos' })
    const urls = { relay: relay.firehoseUrl, recorded: recorded.url }

    const counts: Result['counts'] = {}
    const contenders = SCENARIOS.flatMap((scenario) =>
      (Object.keys(PATHS) as (keyof typeof PATHS)[]).map((path) => ({
        name: `${scenario}: ${PATHS[path]}`,
        run: async (): Promise<Sample> => {
          const { value: kept, ms } = await timed(() => replay(path, urls[scenario], network.plcUrl, backlog))
          if (path !== 'raw') {
            const missing = [...backlog.moods].filter((m) => !kept.has(m)).length
            counts[`${scenario}: ${path}: moods kept`] = [kept.size, backlog.moods.size]
            counts[`${scenario}: ${path}: moods missing`] = [Math.max(missing, counts[`${scenario}: ${path}: moods missing`]?.[0] ?? 0), 0]
          }
          return { events: backlog.commits, ms }
        },
      })),
    )
    const results = await rounds(contenders, { rounds: o.rounds, warmup: true })
    const ms = (scenario: string, path: keyof typeof PATHS) => median(results.get(`${scenario}: ${PATHS[path]}`)!.map((s) => s.ms))
    const rows = contenders.map(({ name }) => {
      const [scenario, path] = [name.split(':')[0]!, (Object.keys(PATHS) as (keyof typeof PATHS)[]).find((p) => name.endsWith(PATHS[p]))!]
      const t = ms(scenario, path)
      return [name, fmt(t, 0), int(backlog.commits / (t / 1000)), fmt(ms(scenario, 'plain') / t, 2), fmt(t / ms(scenario, 'raw'), 2)]
    })
    const metrics: Result['metrics'] = {}
    for (const scenario of SCENARIOS) {
      for (const path of Object.keys(PATHS) as (keyof typeof PATHS)[]) metrics[`${scenario}: ${path} commits/s`] = backlog.commits / (ms(scenario, path) / 1000)
      metrics[`${scenario}: ours / plain`] = pairedRatio(results, `${scenario}: ${PATHS.ours}`, `${scenario}: ${PATHS.plain}`)
    }
    return {
      title: `firehose-path: ${backlog.commits} one-op commits (generated at ${int(backlog.commits / (gen.ms / 1000))}/s), ${backlog.moods.size} moods (1 in ${o.moodEvery}), ${o.accounts} accounts, ${frames.length} frames (${fmt(frames.reduce((n, f) => n + f.length, 0) / 2 ** 20, 2)} MiB); median of ${o.rounds} rounds`,
      tables: [{ headers: ['scenario: path', 'wall ms', 'commits/s', 'throughput vs plain (x)', 'time vs raw floor (x)'], rows }],
      notes: [
        `ours/plain throughput (median of per-round ratios): relay ${ratio(metrics['relay: ours / plain']!)}, recorded ${ratio(metrics['recorded: ours / plain']!)} (target >= 10x)`,
        'ours and plain verify every kept commit (signature, MST proof); the counts check both kept exactly the moods written, in every round.',
      ],
      metrics,
      counts,
    }
  } finally {
    await recorded?.stop()
    await relay?.stop()
    await network.stop()
  }
}

/** Writes a probe post and waits for the relay to serve it: from then on it relays everything. Its seq. */
async function relayIsLive(relay: RelayServer, account: TestAccount): Promise<number> {
  let seq = 0
  let tap: ReturnType<typeof firehoseTap> | undefined
  await within('the relay to go live', (done) => {
    tap = firehoseTap(relay.firehoseUrl, (frame) => {
      if (frame.t === '#commit' && frame.ops?.some((op) => op.path?.startsWith(`${POST_NSID}/`))) {
        seq = frame.seq ?? 0
        done()
      }
    })
    void tap.opened.then(() => account.agent.com.atproto.repo.createRecord({ repo: account.did, collection: POST_NSID, record: { $type: POST_NSID, text: 'probe', createdAt: new Date().toISOString() } }))
  })
  tap?.close()
  return seq
}

/** One-op applyWrites commits, one writer per account, all at once, until `commits` or `genSeconds`. */
async function generate(accounts: TestAccount[], o: (typeof SIZES)['full']): Promise<Backlog> {
  const backlog: Backlog = { moods: new Set(), commits: 0, from: 0, lastSeq: 0, frames: 0 }
  const deadline = performance.now() + o.genSeconds * 1000
  let next = 0
  const writer = async (account: TestAccount) => {
    for (let i = next++; i < o.commits && performance.now() < deadline; i = next++) {
      const isMood = i % o.moodEvery === o.moodEvery >> 1
      const now = new Date().toISOString()
      const value = isMood ? { $type: MOOD_NSID, ref: clientRef(), mood: `bench mood ${i}`, when: now } : { $type: POST_NSID, text: `bench post ${i}`, createdAt: now }
      const res = await account.agent.com.atproto.repo.applyWrites({ repo: account.did, writes: [{ $type: 'com.atproto.repo.applyWrites#create', collection: value.$type, value }] })
      const result = res.data.results?.[0] as { uri?: string; cid?: string } | undefined
      if (isMood) backlog.moods.add(`${result?.uri} ${result?.cid}`)
      if (++backlog.commits % 1000 === 0) progress(`  ${backlog.commits} commits`)
    }
  }
  await Promise.all(accounts.map(writer))
  return backlog
}

/** One replay of the backlog by one path; the moods it kept (`uri cid`). */
async function replay(path: keyof typeof PATHS, url: string, plcUrl: string, backlog: Backlog): Promise<Set<string>> {
  const kept = new Set<string>()
  if (path === 'raw') {
    let n = 0
    const ws = new WebSocket(`${url}?cursor=${backlog.from}`)
    await within('the raw drain', (done, fail) => ws.on('message', () => void (++n >= backlog.frames && done())).on('error', fail))
    ws.terminate()
  } else if (path === 'ours') {
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS)
    const source = new FirehoseSource({ url, idResolver: createIdResolver(plcUrl) })
    let commits = 0
    outer: for await (const events of source.events(abort.signal, backlog.from === undefined ? undefined : { cursor: backlog.from })) for (const event of events) {
      if (event.kind === 'commit') {
        commits++
        for (const op of event.ops) if (op.action === 'upsert') kept.add(`at://${event.did}/${op.collection}/${op.rkey} ${op.cid}`)
      }
      if (event.kind === 'invalid') throw new Error(`ours: invalid event: ${event.reason}`)
      if (event.cursor !== undefined && event.cursor >= backlog.lastSeq) break outer
    }
    clearTimeout(timer)
    abort.abort()
    // Every commit it kept was verified (signature and MST proofs), none skipped.
    if (source.stats.verifiedCommits !== commits) throw new Error(`ours: ${source.stats.verifiedCommits} commits verified of ${commits} kept`)
  } else {
    // Handles are not verified: `.test` handles do not resolve, and ours does not verify them either.
    const idResolver = new IdResolver({ plcUrl, fetch: globalThis.fetch, didCache: new MemoryCache() })
    let firehose: Firehose | undefined
    // It hands on kept ops only: the end is when the known number of moods has arrived.
    await within('plain', (done, fail) => {
      firehose = new Firehose({
        service: url.replace(/\/xrpc\/.*$/, ''),
        idResolver,
        filterCollections: [MOOD_NSID],
        unauthenticatedCommits: false,
        unauthenticatedHandles: true,
        getCursor: () => backlog.from,
        handleEvent: (evt) => {
          if (evt.event === 'create' || evt.event === 'update') kept.add(`${evt.uri.toString()} ${evt.cid.toString()}`)
          if (kept.size >= backlog.moods.size) done()
        },
        onError: (err) => fail(new Error(`plain: ${err.message}`)),
      })
      void firehose.start()
    }).finally(() => firehose?.destroy())
  }
  return kept
}

/** Settles when `start`'s `done` is called, fails on `fail` or after the timeout. */
function within(what: string, start: (done: () => void, fail: (err: Error) => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out`)), TIMEOUT_MS)
    const settle = (err?: Error) => (clearTimeout(timer), err ? reject(err) : resolve())
    start(() => settle(), settle)
  })
}

await script(import.meta, run)
