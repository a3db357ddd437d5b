/**
 * Backfill: `backfill()` (RepoSync over RepoReader) of R repos of M moods each into an empty
 * database, against fetching the same repos raw (plain `fetch` of getRepo, body read, nothing
 * else) at the same concurrency; `RepoReader.read` alone (the ceiling for any store); a second
 * run over the unchanged repos; and, in the first round, a forced re-read that finds every
 * record unchanged. Then the big-repo scenario: one repo of `others` records of other
 * collections (likes and posts) and `bigMoods` moods, `RepoReader.read` against the raw
 * getRepo download of the same repo, with the peak memory of each.
 *
 *   node bench/backfill.ts [--repos 100] [--moods 100] [--concurrency 4] [--rounds 2] [--batch 50]
 *                          [--others 100000] [--big-moods 10] [--big-rounds 3] [--only all|repos|big] [--tiny]
 *                          [--profile FILE]   (a V8 CPU profile of each run 1 alone: FILE.1.cpuprofile ...)
 *
 * The PDS and PLC run in this process (dev-env), so they share the 2 cores with the code under
 * test, and their memory is in the RSS figures (the raw row shows that floor). MongoDB:
 * MONGODB_URI, else the rig's mongo-java-server (FerretDB with MOODSYNC_TEST_MONGO=ferretdb); the documents each run wrote are counted by the
 * driver's command monitoring. Setup is not timed. Each round backfills into a fresh database.
 */
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { MongoClient } from 'mongodb'
import { TID } from '@atproto/common-web'
import { createIdResolver } from '../src/atproto/identity.ts'
import { RepoReader } from '../src/atproto/repo-reader.ts'
import { backfill, type BackfillReport } from '../src/reconcile/backfill.ts'
import { forEachConcurrent } from '../src/reconcile/pool.ts'
import { RepoSync } from '../src/reconcile/repo-sync.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { Database } from '../src/store/database.ts'
import { ensureIndexes } from '../src/store/indexes.ts'
import { MOOD_NSID, toRecord } from '../src/sync/mood.ts'
import { TestNetwork } from '../rig/network.ts'
import { fmt, fullGc, int, knobs, median, progress, ratio, script, verdict, type Result, type RunOptions } from './lib/report.ts'
import { startMongo } from './lib/servers.ts'

const SIZES = {
  tiny: { repos: 3, moods: 5, concurrency: 2, rounds: 1, batch: 50, others: 1_000, bigMoods: 10, bigRounds: 1, only: 'all', profile: '' },
  full: { repos: 100, moods: 100, concurrency: 4, rounds: 2, batch: 50, others: 100_000, bigMoods: 10, bigRounds: 3, only: 'all', profile: '' },
}

export const LABELS = { raw: 'raw getRepo fetch', read: 'RepoReader.read only', warm: 'RepoReader.read, DIDs cached', run1: 'backfill run 1 (empty db)', run2: 'backfill run 2 (unchanged)', forced: 'backfill --force (re-read)' } as const
export const BIG_LABELS = { raw: 'big repo: raw getRepo fetch', read: 'big repo: RepoReader.read' } as const
type Case = keyof typeof LABELS

interface Run {
  ms: number
  /** Peak RSS above the level before the run (50 ms samples), and JS heap left after it (full GC both sides). */
  rssPeak: number
  heapKept: number
  written: number
}

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const o = knobs(opts, SIZES)
  const total = o.repos * o.moods
  const mongo = await startMongo(opts.mongoUri)
  // Documents changed per write command, summed: "run 2 wrote nothing" is then measured, not assumed.
  let written = 0
  const client = await new MongoClient(mongo.uri, { monitorCommands: true }).connect()
  client.on('commandSucceeded', (e) => {
    const reply = e.reply as { n?: number; nModified?: number; upserted?: unknown[] }
    if (e.commandName === 'insert' || e.commandName === 'delete') written += reply.n ?? 0
    if (e.commandName === 'update') written += (reply.nModified ?? 0) + (reply.upserted?.length ?? 0)
  })
  const network = await TestNetwork.start()
  const runs: Record<Case, Run[]> = { raw: [], read: [], warm: [], run1: [], run2: [], forced: [] }
  const counts: Result['counts'] = {}
  const dids: string[] = []
  let carBytes = 0
  // A reader as a CLI run has one: a cold DID cache (one PLC request per DID).
  const reader = () => new RepoReader({ idResolver: createIdResolver(network.plcUrl), collection: MOOD_NSID })
  const measure = async <T>(key: Case, work: () => Promise<T>): Promise<T> => {
    fullGc()
    const base = process.memoryUsage()
    let rss = base.rss
    const timer = setInterval(() => (rss = Math.max(rss, process.memoryUsage.rss())), 50)
    const writtenBefore = written
    const profiler = key === 'run1' && o.profile ? await startProfile() : undefined
    const started = performance.now()
    const value = await work()
    const ms = performance.now() - started
    if (profiler) await profiler.stop(`${o.profile}.${runs.run1.length + 1}.cpuprofile`)
    clearInterval(timer)
    fullGc()
    runs[key].push({ ms, rssPeak: Math.max(rss, process.memoryUsage.rss()) - base.rss, heapKept: process.memoryUsage().heapUsed - base.heapUsed, written: written - writtenBefore })
    progress(`  ${LABELS[key].padEnd(28)} ${fmt(ms / 1000, 2)} s`)
    return value
  }
  const raw = () =>
    forEachConcurrent(dids, o.concurrency, undefined, async (did) => {
      const res = await fetch(`${network.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
      if (!res.ok) throw new Error(`getRepo ${did}: ${res.status}`)
      const body = await res.arrayBuffer()
      carBytes += body.byteLength
    })
  // A reader as a long-running `moodsync ingest` has one: the DID documents already cached
  // (resolved untimed first), so the row is what reading costs without the rig's PLC.
  const warmReader = async () => {
    const idResolver = createIdResolver(network.plcUrl)
    await forEachConcurrent(dids, o.concurrency, undefined, async (did) => void (await idResolver.did.resolveAtprotoData(did)))
    return new RepoReader({ idResolver, collection: MOOD_NSID })
  }
  const readWarm = async (r: RepoReader) => {
    let records = 0
    await forEachConcurrent(dids, o.concurrency, undefined, async (did) => {
      const snapshot = await r.read(did)
      records += snapshot.records.length
    })
    counts['read, DIDs cached: records'] = [records, total]
  }
  const readOnly = async () => {
    const r = reader()
    let records = 0
    await forEachConcurrent(dids, o.concurrency, undefined, async (did) => {
      const snapshot = await r.read(did)
      records += snapshot.records.length
    })
    counts['read: records'] = [records, total]
  }
  const sync = (store: Database) => (force = false) => backfill(new RepoSync({ store, reader: reader() }), dids, { concurrency: o.concurrency, force, batchRepos: o.batch })
  const nothingApplied = (r: BackfillReport) => Object.entries(r.applied).filter(([k, v]) => k !== 'unchanged' && v > 0).length

  const repos = o.only !== 'big'
  let big: BigRepo | undefined
  try {
    // Setup: R accounts, M moods each through applyWrites (100 creates a call; the PDS allows 200).
    for (let i = 0; repos && i < o.repos; i++) {
      const account = await network.createAccount(`bf${i}`)
      for (let j = 0; j < o.moods; j += 100) {
        const writes = Array.from({ length: Math.min(100, o.moods - j) }, (_, k) => ({
          $type: 'com.atproto.repo.applyWrites#create' as const,
          collection: MOOD_NSID,
          rkey: TID.nextStr(),
          value: toRecord({ mood: `mood ${j + k} of ${account.handle}: ${'quiet afternoon '.repeat(1 + ((j + k) % 4))}`, when: new Date(), ref: `bench-${j + k}` }),
        }))
        await account.agent.com.atproto.repo.applyWrites({ repo: account.did, writes })
      }
      dids.push(account.did)
    }
    if (repos) await raw() // untimed warm-up: JIT, the PDS's caches, connections
    if (repos) await readOnly()
    for (let round = 1; repos && round <= o.rounds; round++) {
      const db = client.db(`bench_backfill_${process.pid}_${round}`)
      await ensureIndexes(db)
      const again = sync(new Database(db))
      // Rounds alternate which side goes first.
      if (round % 2 === 1) {
        await measure('raw', raw).then(() => measure('read', readOnly))
        const r = await warmReader()
        await measure('warm', () => readWarm(r))
      }
      const r1 = await measure('run1', () => again())
      counts[`round ${round}: run 1 inserted`] = [r1.applied.inserted, total]
      counts[`round ${round}: run 1 repos synced`] = [r1.repos.synced, o.repos]
      counts[`round ${round}: run 1 documents stored`] = [await db.collection(COLLECTIONS.moods).countDocuments(), total]
      const r2 = await measure('run2', () => again())
      counts[`round ${round}: run 2 repos unchanged`] = [r2.repos.unchanged, o.repos]
      counts[`round ${round}: run 2 ops applied`] = [nothingApplied(r2), 0]
      counts[`round ${round}: run 2 documents written`] = [runs.run2.at(-1)!.written, 0]
      if (round === 1) {
        const forced = await measure('forced', () => again(true))
        counts['forced: records unchanged'] = [forced.applied.unchanged, total]
        counts['forced: ops applied'] = [nothingApplied(forced), 0]
      }
      if (round % 2 === 0) {
        const r = await warmReader()
        await measure('warm', () => readWarm(r))
        await measure('read', readOnly).then(() => measure('raw', raw))
      }
      await db.dropDatabase()
    }
    // After the rounds above, so its setup (minutes of writes) cannot disturb them.
    if (o.only !== 'repos') big = await bigRepo(network, reader, o, counts)
  } finally {
    await network.stop()
    await client.close()
    await mongo.stop()
  }

  const ms = (key: Case) => median(runs[key].map((r) => r.ms))
  const mb = (bytes: number) => fmt(bytes / 2 ** 20)
  const tables: Result['tables'] = []
  const metrics: Result['metrics'] = {}
  let title = `backfill: the big-repo scenario only`
  if (repos) {
    const rows = (Object.keys(LABELS) as Case[]).map((key) => {
      const worst = (f: (r: Run) => number) => Math.max(...runs[key].map(f))
      return [LABELS[key], int(ms(key)), ratio(ms('raw') / ms(key)), int(o.repos / (ms(key) / 1000)), int(total / (ms(key) / 1000)), `+${mb(worst((r) => r.rssPeak))}`, mb(worst((r) => r.heapKept))]
    })
    // Per-round ratios: the raw fetch and run 1 of the same round.
    const efficiency = median(runs.run1.map((r, i) => runs.raw[i]!.ms / r.ms))
    const readEfficiency = median(runs.read.map((r, i) => runs.raw[i]!.ms / r.ms))
    const warmEfficiency = median(runs.warm.map((r, i) => runs.raw[i]!.ms / r.ms))
    const run2Share = median(runs.run2.map((r, i) => r.ms / runs.run1[i]!.ms))
    title = `backfill: ${o.repos} repos x ${o.moods} moods, concurrency ${o.concurrency}, batches of up to ${o.batch} repos, ${o.rounds} rounds (median; ratios per round); repo CARs ${fmt(carBytes / o.repos / 1024 / (o.rounds + 1), 1)} KiB each; ${mongo.label}`
    tables.push(
      { headers: ['case', 'ms (median)', 'raw/case', 'repos/s', 'moods/s', 'peak RSS MB', 'heap kept MB'], rows },
      {
        headers: ['target', 'value', 'verdict'],
        rows: [
          ['efficiency = raw time / backfill run 1 time', ratio(efficiency), verdict(efficiency, 0.7)],
          ['(reading alone: raw time / RepoReader.read time)', ratio(readEfficiency), verdict(readEfficiency, 0.7)],
          ['(reading, DIDs cached: raw time / RepoReader.read time)', ratio(warmEfficiency), verdict(warmEfficiency, 0.7)],
          ['run 2 (unchanged) time / run 1 time', `${fmt(run2Share * 100)}%`, run2Share < 0.1 ? 'met (< 10%)' : 'MISSED (>= 10%)'],
        ],
      },
    )
    Object.assign(metrics, Object.fromEntries((Object.keys(LABELS) as Case[]).map((key) => [`${key} ms`, ms(key)])), { 'raw / run 1': efficiency, 'raw / read': readEfficiency, 'raw / read, DIDs cached': warmEfficiency, 'run 2 / run 1': run2Share })
  }
  if (big) {
    tables.push(big.table, big.targets)
    Object.assign(metrics, big.metrics)
  }
  return {
    title,
    tables,
    notes: [
      ...(repos ? ['The counts check every run 1 inserted every mood, every run 2 changed no document (command monitoring) and the forced run found every record unchanged.'] : []),
      ...(big ? [big.note] : []),
    ],
    metrics,
    counts,
  }
}

/** The V8 sampling profiler (what `node --cpu-prof` runs) around one run, not the setup around it. */
async function startProfile(): Promise<{ stop: (file: string) => Promise<void> }> {
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 200 })
  await session.post('Profiler.start')
  return {
    stop: async (file) => {
      const { profile } = await session.post('Profiler.stop')
      await writeFile(file, JSON.stringify(profile))
      session.disconnect()
      progress(`  CPU profile written to ${file}`)
    },
  }
}

interface BigRepo {
  table: Result['tables'][number]
  targets: Result['tables'][number]
  metrics: Result['metrics']
  note: string
}

/**
 * One repo of `others` likes and posts (applyWrites of 200, unvalidated: setup speed) and
 * `bigMoods` moods; each round fetches it raw and reads it, alternating which goes first.
 * Memory is sampled every 10 ms from a full GC: RSS, and JS heap plus ArrayBuffers (where
 * the CAR's bytes live), above the level before.
 */
async function bigRepo(network: TestNetwork, reader: () => RepoReader, o: (typeof SIZES)['full'], counts: Result['counts']): Promise<BigRepo> {
  const account = await network.createAccount('bigrepo')
  const setup = performance.now()
  const subject = { uri: `at://${account.did}/app.bsky.feed.post/3kabcdefghij2`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }
  for (let done = 0; done < o.others; done += 200) {
    const writes = Array.from({ length: Math.min(200, o.others - done) }, (_, k) => {
      const like = (done + k) % 2 === 0
      const createdAt = new Date().toISOString()
      return { $type: 'com.atproto.repo.applyWrites#create' as const, collection: like ? 'app.bsky.feed.like' : 'app.bsky.feed.post', rkey: TID.nextStr(), value: like ? { $type: 'app.bsky.feed.like', subject, createdAt } : { $type: 'app.bsky.feed.post', text: `post ${done + k}: ${'a quiet afternoon '.repeat(1 + (k % 3))}`, createdAt } }
    })
    await account.agent.com.atproto.repo.applyWrites({ repo: account.did, writes, validate: false })
    if (done % 20_000 === 0) progress(`  big repo: ${done} of ${o.others} records written`)
  }
  const moods = Array.from({ length: o.bigMoods }, (_, k) => ({ $type: 'com.atproto.repo.applyWrites#create' as const, collection: MOOD_NSID, rkey: TID.nextStr(), value: toRecord({ mood: `big repo mood ${k}`, when: new Date(), ref: `bench-big-${k}` }) }))
  await account.agent.com.atproto.repo.applyWrites({ repo: account.did, writes: moods })
  progress(`  big repo: ${o.others} records and ${o.bigMoods} moods written in ${fmt((performance.now() - setup) / 1000)} s`)

  type Side = keyof typeof BIG_LABELS
  const samples: Record<Side, { ms: number; rss: number; mem: number }[]> = { raw: [], read: [] }
  let carBytes = 0
  let records = 0
  const sides: Record<Side, () => Promise<unknown>> = {
    raw: async () => {
      const res = await fetch(`${network.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(account.did)}`)
      if (!res.ok) throw new Error(`getRepo ${account.did}: ${res.status}`)
      carBytes = (await res.arrayBuffer()).byteLength
    },
    read: async () => void (records = (await reader().read(account.did)).records.length),
  }
  const measure = async (side: Side) => {
    fullGc()
    const used = () => {
      const m = process.memoryUsage()
      return { rss: m.rss, mem: m.heapUsed + m.arrayBuffers }
    }
    const base = used()
    const peak = { ...base }
    const timer = setInterval(() => {
      const now = used()
      peak.rss = Math.max(peak.rss, now.rss)
      peak.mem = Math.max(peak.mem, now.mem)
    }, 10)
    const started = performance.now()
    await sides[side]()
    const ms = performance.now() - started
    clearInterval(timer)
    samples[side].push({ ms, rss: peak.rss - base.rss, mem: peak.mem - base.mem })
    progress(`  ${BIG_LABELS[side].padEnd(28)} ${fmt(ms / 1000, 2)} s`)
  }
  await sides.raw() // untimed warm-up: the PDS's caches
  for (let round = 1; round <= o.bigRounds; round++) {
    for (const side of round % 2 === 1 ? (['raw', 'read'] as const) : (['read', 'raw'] as const)) await measure(side)
    counts[`big repo round ${round}: moods read`] = [records, o.bigMoods]
  }
  const mb = (bytes: number) => fmt(bytes / 2 ** 20)
  const worst = (side: Side, key: 'rss' | 'mem') => Math.max(...samples[side].map((s) => s[key]))
  const ms = (side: Side) => median(samples[side].map((s) => s.ms))
  const slowdown = median(samples.read.map((s, i) => s.ms / samples.raw[i]!.ms))
  const memory = Math.max(worst('read', 'rss'), worst('read', 'mem'))
  return {
    table: {
      headers: ['case', 'ms (median)', 'case/raw', 'MB/s', 'peak RSS MB', 'peak heap+buffers MB'],
      rows: (Object.keys(BIG_LABELS) as Side[]).map((side) => [BIG_LABELS[side], int(ms(side)), `${fmt(ms(side) / ms('raw'), 2)}x`, fmt(carBytes / 2 ** 20 / (ms(side) / 1000)), `+${mb(worst(side, 'rss'))}`, `+${mb(worst(side, 'mem'))}`]),
    },
    targets: {
      headers: ['target', 'value', 'verdict'],
      rows: [
        ['big repo: read time / raw getRepo time', `${fmt(slowdown, 2)}x`, slowdown < 2 ? 'met (< 2x)' : 'MISSED (>= 2x)'],
        ['big repo: peak memory of the read (the larger of RSS, heap+buffers)', `${mb(memory)} MB`, memory < 100 * 2 ** 20 ? 'met (< 100 MB)' : 'MISSED (>= 100 MB)'],
      ],
    },
    metrics: { 'big raw ms': ms('raw'), 'big read ms': ms('read'), 'big read / raw': slowdown },
    note: `Big repo: ${o.others} records of app.bsky.feed.like/post and ${o.bigMoods} moods, CAR ${mb(carBytes)} MB, ${o.bigRounds} rounds (median; ratio per round). The PDS serves it from this process, so its own memory while serving is in both rows.`,
  }
}

await script(import.meta, run)
