/**
 * Backfill benchmark: `backfill()` of R repos of M moods each, against fetching the same repos
 * raw (plain `fetch` of getRepo, body read, nothing else) at the same concurrency; then a second
 * run over the unchanged repos, and a forced re-read that finds every record unchanged.
 *
 *   bash scripts/with-node.sh node bench/backfill.ts [--repos 100] [--moods 100] [--concurrency 4] [--rounds 2] [--sweep 1]
 *
 * The PDS and PLC run in this process (dev-env), so they compete with the code under test for
 * the same 2 cores, and their memory is in the RSS figures too (the raw row shows that floor).
 * MongoDB is MONGODB_URI when set, else the test rig's FerretDB. Setup (accounts, records) is
 * not timed. Each round backfills into a fresh database; rounds alternate which side goes first.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { TID } from '@atproto/common-web'
import { createIdResolver } from '../src/ingest/service.ts'
import { MOOD_NSID, toRecord } from '../src/mood.ts'
import { backfill, type BackfillReport } from '../src/reconcile/backfill.ts'
import { forEachConcurrent } from '../src/reconcile/pool.ts'
import { RepoReader } from '../src/reconcile/repo-reader.ts'
import { RepoSync } from '../src/reconcile/repo-sync.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { Store } from '../src/store/store.ts'
import { FerretDbServer } from '../test/rig/ferretdb.ts'
import { TestNetwork } from '../test/rig/network.ts'
import { formatRatio, log, machineNote, median, option, table, verdict } from './lib-table.ts'

const REPOS = option('repos', 'BENCH_REPOS', 100)
const MOODS = option('moods', 'BENCH_MOODS', 100)
const CONCURRENCY = option('concurrency', 'BENCH_CONCURRENCY', 4)
const ROUNDS = option('rounds', 'BENCH_ROUNDS', 2)
const SWEEP = option('sweep', 'BENCH_SWEEP', 1) // 1: one more raw/backfill pair at concurrency 1 and 8

// A full GC before and after each run, so "retained" is what a run leaves behind, not garbage.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

interface Memory { rssPeak: number; heapPeak: number; heapRetained: number }
/** Peak RSS and heap above the level before the run (50 ms samples), and heap kept after it. */
async function withMemory<T>(work: () => Promise<T>): Promise<{ value: T; ms: number; mem: Memory }> {
  gc()
  const base = process.memoryUsage()
  let rss = base.rss
  let heap = base.heapUsed
  const sample = () => {
    const m = process.memoryUsage()
    rss = Math.max(rss, m.rss)
    heap = Math.max(heap, m.heapUsed)
  }
  const timer = setInterval(sample, 50)
  const started = performance.now()
  const value = await work()
  const ms = performance.now() - started
  clearInterval(timer)
  sample()
  gc()
  return { value, ms, mem: { rssPeak: rss - base.rss, heapPeak: heap - base.heapUsed, heapRetained: process.memoryUsage().heapUsed - base.heapUsed } }
}

const ferret = process.env.MONGODB_URI ? undefined : await FerretDbServer.start()
const mongoUri = process.env.MONGODB_URI ?? ferret!.uri
const network = await TestNetwork.start()
const started = new Date()

// Setup: R accounts, M moods each through applyWrites (100 creates a call, the PDS allows 200).
log(`setup: ${REPOS} accounts x ${MOODS} moods…`)
const dids: string[] = []
for (let i = 0; i < REPOS; i++) {
  const account = await network.createAccount(`bf${i}`)
  for (let j = 0; j < MOODS; j += 100) {
    const writes = Array.from({ length: Math.min(100, MOODS - j) }, (_, k) => ({
      $type: 'com.atproto.repo.applyWrites#create' as const,
      collection: MOOD_NSID,
      rkey: TID.nextStr(),
      value: toRecord({ mood: `mood ${j + k} of ${account.handle}: ${'quiet afternoon '.repeat(1 + ((j + k) % 4))}`, when: new Date() }),
    }))
    await account.agent.com.atproto.repo.applyWrites({ repo: account.did, writes })
  }
  dids.push(account.did)
}

/** The baseline: the same downloads, nothing done with the bytes. */
async function raw(concurrency: number): Promise<number> {
  let bytes = 0
  await forEachConcurrent(dids, concurrency, undefined, async (did) => {
    const res = await fetch(`${network.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
    if (!res.ok) throw new Error(`getRepo ${did}: ${res.status}`)
    bytes += (await res.arrayBuffer()).byteLength
  })
  return bytes
}

// Where a run's time goes: per-repo latencies summed by phase (at concurrency 1 they add up to
// the wall time; above it they overlap and include waiting for the CPU), and MongoDB commands
// from the driver's command monitoring, with the documents each write command changed.
type Phases = Record<'resolve' | 'latestCommit' | 'getRepo' | 'read' | 'sync', number>
interface Commands { count: number; ms: number; docs: number }
interface Probe { phases: Phases; commands: Map<string, Commands> }
let probe: Probe = newProbe()
function newProbe(): Probe {
  return { phases: { resolve: 0, latestCommit: 0, getRepo: 0, read: 0, sync: 0 }, commands: new Map() }
}
async function timed<T>(phase: keyof Phases, work: Promise<T>): Promise<T> {
  const t = performance.now()
  try {
    return await work
  } finally {
    probe.phases[phase] += performance.now() - t
  }
}
// The body is read inside the wrapper so that getRepo covers the PDS building and sending the
// CAR; the copy into a new Response costs one memcpy of the CAR.
const timedFetch: typeof fetch = async (input, init) => {
  const phase = String(input).includes('getLatestCommit') ? 'latestCommit' : 'getRepo'
  return timed(phase, (async () => {
    const res = await fetch(input, init)
    return new Response(await res.arrayBuffer(), res)
  })())
}
const written = (name: string, reply: Record<string, unknown>) =>
  name === 'insert' || name === 'delete' ? Number(reply.n ?? 0) : name === 'update' ? Number(reply.nModified ?? 0) + ((reply.upserted as unknown[] | undefined)?.length ?? 0) : 0

/** One backfill, as the CLI would run it: a cold DID cache, a new reader. */
async function runBackfill(store: Store, concurrency: number, force = false): Promise<BackfillReport> {
  const idResolver = createIdResolver(network.plcUrl)
  const resolve = idResolver.did.resolveAtprotoData.bind(idResolver.did)
  idResolver.did.resolveAtprotoData = (did, refresh) => timed('resolve', resolve(did, refresh))
  const reader = new RepoReader({ idResolver, fetch: timedFetch })
  const sync = new RepoSync({
    store,
    reader: { latestRev: (did: string) => timed('latestCommit', reader.latestRev(did)), read: (did: string) => timed('read', reader.read(did)) } as RepoReader,
  })
  const timedSync = { sync: (did: string, o: { force?: boolean }) => timed('sync', sync.sync(did, o)) } as RepoSync
  return backfill(timedSync, dids, { concurrency, force })
}

async function openStore(label: string): Promise<Store> {
  const store = new Store({ mongodb: { uri: mongoUri, db: `moodsync_bench_backfill_${process.pid}_${label}` } })
  store.client.monitorCommands = true
  const startedAt = new Map<number, string>()
  store.client.on('commandStarted', (e) => startedAt.set(e.requestId, e.commandName))
  store.client.on('commandSucceeded', (e) => {
    const c = probe.commands.get(e.commandName) ?? { count: 0, ms: 0, docs: 0 }
    c.count++
    c.ms += e.duration
    c.docs += written(e.commandName, e.reply as Record<string, unknown>)
    probe.commands.set(e.commandName, c)
  })
  await store.start()
  return store
}

interface Row { name: string; round: number; concurrency: number; ms: number; mem: Memory; report?: BackfillReport; probe?: Probe }
const rows: Row[] = []
const problems: string[] = []
const check = (ok: boolean, what: string) => ok || problems.push(what)
const noWrites = (r: BackfillReport) => Object.entries(r.applied).every(([k, v]) => k === 'unchanged' || v === 0)
const docsWritten = (p: Probe) => [...p.commands.values()].reduce((a, c) => a + c.docs, 0)

async function measure(name: string, round: number, concurrency: number, work: () => Promise<BackfillReport | number>): Promise<Row> {
  probe = newProbe()
  const { value, ms, mem } = await withMemory(work)
  const row: Row = { name, round, concurrency, ms, mem, ...(typeof value === 'number' ? {} : { report: value, probe }) }
  rows.push(row)
  log(`  round ${round} c=${concurrency}: ${name.padEnd(28)} ${(ms / 1000).toFixed(2)} s, peak RSS +${mb(mem.rssPeak)} MB, heap retained ${mb(mem.heapRetained)} MB`)
  return row
}

async function backfillRuns(round: number, concurrency: number, full: boolean): Promise<void> {
  const store = await openStore(`r${round}c${concurrency}`)
  try {
    const first = await measure('backfill run 1 (empty db)', round, concurrency, () => runBackfill(store, concurrency))
    const r1 = first.report!
    const stored = await store.db.collection(COLLECTIONS.moods).countDocuments()
    check(r1.applied.inserted === REPOS * MOODS && stored === REPOS * MOODS && r1.repos.synced === REPOS, `run 1 (round ${round}, c=${concurrency}): inserted ${r1.applied.inserted}, stored ${stored}, synced ${r1.repos.synced}, failures ${JSON.stringify(r1.failures)}`)
    if (!full) return
    const second = await measure('backfill run 2 (unchanged)', round, concurrency, () => runBackfill(store, concurrency))
    const r2 = second.report!
    check(noWrites(r2) && r2.repos.unchanged === REPOS && docsWritten(second.probe!) === 0, `run 2 (round ${round}): ${JSON.stringify(r2.repos)} applied ${JSON.stringify(r2.applied)}, ${docsWritten(second.probe!)} documents written`)
    const forced = await measure('backfill --force (re-read)', round, concurrency, () => runBackfill(store, concurrency, true))
    check(forced.report!.applied.unchanged === REPOS * MOODS && noWrites(forced.report!), `forced (round ${round}): applied ${JSON.stringify(forced.report!.applied)}`)
  } finally {
    await store.db.dropDatabase()
    await store.destroy()
  }
}

try {
  // Untimed warm-up: JIT, the PDS's caches, connections.
  await raw(CONCURRENCY)
  for (let round = 1; round <= ROUNDS; round++) {
    if (round % 2 === 1) await measure('raw getRepo fetch', round, CONCURRENCY, () => raw(CONCURRENCY))
    await backfillRuns(round, CONCURRENCY, true)
    if (round % 2 === 0) await measure('raw getRepo fetch', round, CONCURRENCY, () => raw(CONCURRENCY))
  }
  if (SWEEP) {
    for (const c of [1, 8].filter((c) => c !== CONCURRENCY)) {
      await measure('raw getRepo fetch', 0, c, () => raw(c))
      await backfillRuns(0, c, false)
    }
  }
} finally {
  await network.stop()
  await ferret?.stop()
}

// Report: medians over the rounds at the main concurrency, ratios against raw of the same round.
function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1)
}
const at = (name: string, c = CONCURRENCY) => rows.filter((r) => r.name === name && r.concurrency === c && (c === CONCURRENCY ? r.round > 0 : true))
const perRound = (a: string, b: string, f: (x: Row, y: Row) => number) => median(at(a).map((x) => f(x, at(b).find((y) => y.round === x.round)!)))
const RAW = 'raw getRepo fetch'
const RUN1 = 'backfill run 1 (empty db)'
const RUN2 = 'backfill run 2 (unchanged)'
const FORCED = 'backfill --force (re-read)'
const efficiency = perRound(RAW, RUN1, (raw, run) => raw.ms / run.ms)
const run2Share = perRound(RUN2, RUN1, (two, one) => two.ms / one.ms)
const line = (name: string, c = CONCURRENCY) => {
  const xs = at(name, c)
  const ms = median(xs.map((x) => x.ms))
  const rawMs = median(at(RAW, c).map((x) => x.ms))
  return [name, String(c), ms.toFixed(0), formatRatio(rawMs / ms), (REPOS / (ms / 1000)).toFixed(1), Math.round((REPOS * MOODS) / (ms / 1000)).toLocaleString('en-US'), `+${mb(Math.max(...xs.map((x) => x.mem.rssPeak)))}`, `+${mb(Math.max(...xs.map((x) => x.mem.heapPeak)))}`, mb(Math.max(...xs.map((x) => x.mem.heapRetained)))]
}
const HEAD = ['case', 'conc.', 'ms (median)', 'raw/case', 'repos/s', 'moods/s', 'peak RSS MB', 'peak heap MB', 'heap kept MB']
const main = [RAW, RUN1, RUN2, FORCED].map((n) => line(n))
const sweep = SWEEP ? [1, 8].filter((c) => c !== CONCURRENCY).flatMap((c) => [line(RAW, c), line(RUN1, c)]) : []
const phaseRows = rows.filter((r) => r.probe && (r.round === 1 || r.round === 0)).map((r) => {
  const p = r.probe!.phases
  const resolve = p.resolve
  const mongo = p.sync - p.read - p.latestCommit
  const verify = p.read - p.getRepo - resolve
  const top = [...r.probe!.commands].sort((a, b) => b[1].ms - a[1].ms).slice(0, 3).map(([n, c]) => `${n} ${c.count}x ${c.ms.toFixed(0)} ms`).join(', ')
  return [`${r.name}, c=${r.concurrency}`, r.ms.toFixed(0), p.sync.toFixed(0), resolve.toFixed(0), p.latestCommit.toFixed(0), p.getRepo.toFixed(0), verify.toFixed(0), mongo.toFixed(0), String(docsWritten(r.probe!)), top]
})
const out = [
  `backfill: ${REPOS} repos x ${MOODS} moods, concurrency ${CONCURRENCY}, ${ROUNDS} rounds (median; ratios per round), started ${started.toISOString()}`,
  `PDS + PLC in this process (dev-env); MongoDB: ${process.env.MONGODB_URI ? 'MONGODB_URI' : 'FerretDB (SQLite backend, test rig)'}; machine: ${machineNote()}`,
  '',
  table(HEAD, [...main, ...sweep]),
  '',
  table(['target', 'value', 'verdict'], [
    ['efficiency = raw time / backfill run 1 time', formatRatio(efficiency), verdict(efficiency, 0.7)],
    ['run 2 (unchanged) time / run 1 time', `${(run2Share * 100).toFixed(1)}%`, run2Share < 0.1 ? 'met (< 10%)' : 'MISSED (>= 10%)'],
    ['run 2 writes (applied, documents changed)', problems.some((p) => p.startsWith('run 2')) ? 'some' : '0', problems.some((p) => p.startsWith('run 2')) ? 'MISSED' : 'met'],
  ]),
  '',
  'Where the time goes (round 1 and the sweep): per-repo latencies summed over repos, ms. mongo = sync - read - getLatestCommit;',
  'verify = read - getRepo - resolve (CAR parse, CID and signature checks, MST walk, record decode).',
  table(['run', 'wall', 'sum sync', 'resolve', 'latestCommit', 'getRepo', 'verify', 'mongo', 'docs written', 'top MongoDB commands (count, summed ms)'], phaseRows),
  '',
  problems.length ? `CHECKS FAILED:\n${problems.map((p) => `- ${p}`).join('\n')}` : `checks: every run 1 inserted ${REPOS * MOODS}; run 2 changed 0 documents; forced runs found every record unchanged`,
]
process.stdout.write(`${out.join('\n')}\n`)
process.exitCode = problems.length ? 1 : 0
