/**
 * Backfill benchmark: `backfill()` of R repos of M moods each into an empty database, against
 * fetching the same repos raw (plain `fetch` of getRepo, body read, nothing else) at the same
 * concurrency; `RepoReader.read` alone (the ceiling for any store); a second run over the
 * unchanged repos; and, once, a forced re-read that finds every record unchanged.
 *
 *   bash scripts/with-node.sh node bench/backfill.ts [--repos 100] [--moods 100] [--concurrency 4] [--rounds 2] [--sweep 1] [--batch 50]
 *
 * The PDS and PLC run in this process (dev-env), so they compete with the code under test for
 * the same 2 cores, and their memory is in the RSS figures too (the raw row shows that floor).
 * MongoDB is MONGODB_URI when set, else the test rig's FerretDB. Setup (accounts, records) is
 * not timed. Each round backfills into a fresh database; rounds alternate which side goes first.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { CommandStartedEvent } from 'mongodb'
import { TID } from '@atproto/common-web'
import { createIdResolver } from '../src/app/service.ts'
import { MOOD_NSID, toRecord } from '../src/sync/mood.ts'
import { backfill, type BackfillReport } from '../src/reconcile/backfill.ts'
import { forEachConcurrent } from '../src/reconcile/pool.ts'
import { RepoReader, type RepoSnapshot } from '../src/atproto/repo-reader.ts'
import { RepoSync } from '../src/reconcile/repo-sync.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { Store } from '../src/store/store.ts'
import { FerretDbServer } from '../rig/ferretdb.ts'
import { TestNetwork } from '../rig/network.ts'
import { formatRatio, log, machineNote, median, option, table, verdict } from './lib-table.ts'

const REPOS = option('repos', 'BENCH_REPOS', 100)
const MOODS = option('moods', 'BENCH_MOODS', 100)
const CONCURRENCY = option('concurrency', 'BENCH_CONCURRENCY', 4)
const ROUNDS = option('rounds', 'BENCH_ROUNDS', 2)
const SWEEP = option('sweep', 'BENCH_SWEEP', 1) // 1: raw, read and run 1 once more at concurrency 1 and 8
const BATCH = option('batch', 'BENCH_BATCH', 50) // backfill's batchRepos (its default is 50)
const [RAW, READ, RUN1, RUN2, FORCED] = ['raw getRepo fetch', 'RepoReader.read only', 'backfill run 1 (empty db)', 'backfill run 2 (unchanged)', 'backfill --force (re-read)']

// A full GC before and after each run, so "heap kept" is what a run leaves behind, not garbage.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1)

interface Memory { rssPeak: number; heapPeak: number; heapKept: number }
/** Peak RSS and heap above their level before the run (50 ms samples), and heap kept after it. */
async function withMemory<T>(work: () => Promise<T>): Promise<{ ms: number; mem: Memory; value: T }> {
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
  return { ms, value, mem: { rssPeak: rss - base.rss, heapPeak: heap - base.heapUsed, heapKept: process.memoryUsage().heapUsed - base.heapUsed } }
}

const ferret = process.env.MONGODB_URI ? undefined : await FerretDbServer.start()
const mongoUri = process.env.MONGODB_URI ?? ferret!.uri
const network = await TestNetwork.start()
const started = new Date()

const dids: string[] = []

let carBytes = 0
/** The baseline: the same downloads, nothing done with the bytes. */
async function raw(concurrency: number): Promise<void> {
  carBytes = 0
  await forEachConcurrent(dids, concurrency, undefined, async (did) => {
    const res = await fetch(`${network.pdsUrl}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`)
    if (!res.ok) throw new Error(`getRepo ${did}: ${res.status}`)
    const body = await res.arrayBuffer()
    carBytes += body.byteLength
  })
}

// Where a run's time goes: per-repo latencies summed by phase, plus the time of each batch
// write (`applyMany`, one at a time), and MongoDB commands from the driver's command
// monitoring, with the documents each write command changed. At concurrency 1 the phases add
// up to the wall time; above it they overlap (other repos are read while a batch is written)
// and include waiting for the CPU.
type Phase = 'resolve' | 'latestCommit' | 'latestRev' | 'getRepo' | 'read' | 'prepare' | 'applyMany'
interface Probe { phases: Record<Phase, number>; batches: number[]; commands: Map<string, { count: number; ms: number; docs: number }> }
const newProbe = (): Probe => ({ phases: { resolve: 0, latestCommit: 0, latestRev: 0, getRepo: 0, read: 0, prepare: 0, applyMany: 0 }, batches: [], commands: new Map() })
let probe = newProbe()
async function timed<T>(phase: Phase, work: Promise<T>): Promise<T> {
  const t = performance.now()
  try {
    return await work
  } finally {
    probe.phases[phase] += performance.now() - t
  }
}
// The body is read inside the wrapper so that getRepo covers the PDS building and sending the
// CAR; handing it on in a new Response costs one copy of the CAR.
const timedFetch: typeof fetch = (input, init) =>
  // latestCommit covers both ways of asking for revs: getLatestCommit per repo, listRepos per PDS.
  timed(/getLatestCommit|listRepos/.test(String(input)) ? 'latestCommit' : 'getRepo', (async () => {
    const res = await fetch(input, init)
    return new Response(await res.arrayBuffer(), res)
  })())

/** A reader as a CLI run has one: a cold DID cache (one PLC request per DID), timed. */
function timedReader(): RepoReader {
  const idResolver = createIdResolver(network.plcUrl)
  const resolve = idResolver.did.resolveAtprotoData.bind(idResolver.did)
  idResolver.did.resolveAtprotoData = (did, refresh) => timed('resolve', resolve(did, refresh))
  const reader = new RepoReader({ idResolver, fetch: timedFetch })
  return {
    latestRev: (did: string) => timed('latestRev', reader.latestRev(did)),
    latestRevAt: (pds: string, did: string) => timed('latestRev', reader.latestRevAt(pds, did)),
    listRevs: (pds: string, opts?: { maxPages?: number }) => timed('latestRev', reader.listRevs(pds, opts)),
    read: (did: string) => timed('read', reader.read(did)),
  } as RepoReader
}

/** The reading half alone (resolve, download, verify, walk, decode). */
async function readOnly(concurrency: number): Promise<void> {
  const reader = timedReader()
  let records = 0
  await forEachConcurrent(dids, concurrency, undefined, async (did) => {
    const snapshot = await reader.read(did)
    records += snapshot.records.length
  })
  if (records !== REPOS * MOODS) throw new Error(`read ${records} records, expected ${REPOS * MOODS}`)
}

/** The real RepoSync, its two halves timed: `backfill` calls `prepare` per repo and `applyMany` per batch. */
class TimedSync extends RepoSync {
  override prepare(did: string, opts?: Parameters<RepoSync['prepare']>[1]) {
    return timed('prepare', super.prepare(did, opts))
  }
  override applyMany(snapshots: readonly RepoSnapshot[]) {
    probe.batches.push(snapshots.length)
    return timed('applyMany', super.applyMany(snapshots))
  }
}

async function runBackfill(store: Store, concurrency: number, force = false): Promise<BackfillReport> {
  return backfill(new TimedSync({ store, reader: timedReader() }), dids, { concurrency, force, batchRepos: BATCH })
}

const written = (name: string, reply: Record<string, unknown>) =>
  name === 'insert' || name === 'delete' ? Number(reply.n ?? 0) : name === 'update' ? Number(reply.nModified ?? 0) + ((reply.upserted as unknown[] | undefined)?.length ?? 0) : 0

async function openStore(label: string): Promise<Store> {
  const store = new Store({ mongodb: { uri: mongoUri, db: `moodsync_bench_backfill_${process.pid}_${label}` } })
  // A constructor option, set here before start() connects (the driver leaves this one
  // writable and reads it per connection). Run 1 checks that it took.
  store.client.options.monitorCommands = true
  // Keyed by command and collection: "find moods" (a scan on FerretDB) is not "find repos".
  const names = new Map<number, string>()
  // A getMore names its cursor id; its collection is in `collection`.
  const target = (e: CommandStartedEvent) => String(e.commandName === 'getMore' ? e.command.collection : e.command[e.commandName])
  store.client.on('commandStarted', (e) => names.set(e.requestId, `${e.commandName} ${target(e).replace('moodsync_', '')}`))
  store.client.on('commandSucceeded', (e) => {
    const name = names.get(e.requestId) ?? e.commandName
    names.delete(e.requestId)
    const c = probe.commands.get(name) ?? { count: 0, ms: 0, docs: 0 }
    probe.commands.set(name, { count: c.count + 1, ms: c.ms + e.duration, docs: c.docs + written(e.commandName, e.reply as Record<string, unknown>) })
  })
  await store.start()
  return store
}

interface Row { name: string; round: number; concurrency: number; ms: number; mem: Memory; probe: Probe }
const rows: Row[] = []
const problems: string[] = []
const check = (ok: boolean, what: string) => ok || problems.push(what)
const docsWritten = (p: Probe) => [...p.commands.values()].reduce((a, c) => a + c.docs, 0)
const nothingApplied = (r: BackfillReport) => Object.entries(r.applied).every(([k, v]) => k === 'unchanged' || v === 0)

async function measure<T>(name: string, round: number, concurrency: number, work: () => Promise<T>): Promise<{ row: Row; value: T }> {
  probe = newProbe()
  const { ms, mem, value } = await withMemory(work)
  const row = { name, round, concurrency, ms, mem, probe }
  probe = newProbe() // the checks after a run are not the run's commands
  rows.push(row)
  log(`  round ${round} c=${concurrency}: ${name.padEnd(28)} ${(ms / 1000).toFixed(2)} s, peak RSS +${mb(mem.rssPeak)} MB, heap kept ${mb(mem.heapKept)} MB`)
  return { row, value }
}

async function backfillRuns(round: number, concurrency: number, full: boolean): Promise<void> {
  const store = await openStore(`r${round}c${concurrency}`)
  try {
    const { row: row1, value: r1 } = await measure(RUN1, round, concurrency, () => runBackfill(store, concurrency))
    const stored = await store.db.collection(COLLECTIONS.moods).countDocuments()
    check(r1.applied.inserted === REPOS * MOODS && stored === REPOS * MOODS && r1.repos.synced === REPOS, `run 1 (round ${round}, c=${concurrency}): inserted ${r1.applied.inserted}, stored ${stored}, ${JSON.stringify(r1.failures)}`)
    // Without command monitoring, "run 2 changed no document" would hold vacuously.
    check(docsWritten(row1.probe) >= REPOS * MOODS, `run 1 (round ${round}, c=${concurrency}): command monitoring saw ${docsWritten(row1.probe)} documents written`)
    if (!full) return
    const { row, value: r2 } = await measure(RUN2, round, concurrency, () => runBackfill(store, concurrency))
    check(nothingApplied(r2) && r2.repos.unchanged === REPOS && docsWritten(row.probe) === 0, `run 2 (round ${round}): ${JSON.stringify(r2.repos)} ${JSON.stringify(r2.applied)}, ${docsWritten(row.probe)} documents written`)
    if (round !== 1) return // one forced re-read is enough: it is slow and says the same each time
    const { value: forced } = await measure(FORCED, round, concurrency, () => runBackfill(store, concurrency, true))
    check(forced.applied.unchanged === REPOS * MOODS && nothingApplied(forced), `forced (round ${round}): ${JSON.stringify(forced.applied)}`)
  } finally {
    await store.db.dropDatabase()
    await store.destroy()
  }
}

// The whole process (PDS included) after the warm-up and after every run, both after a full GC.
let [memBefore, memAfter] = [process.memoryUsage(), process.memoryUsage()]
try {
  // Setup: R accounts, M moods each through applyWrites (100 creates a call; the PDS allows 200).
  log(`setup: ${REPOS} accounts x ${MOODS} moods…`)
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
  await raw(CONCURRENCY) // untimed warm-up: JIT, the PDS's caches, connections
  await readOnly(CONCURRENCY)
  gc()
  memBefore = process.memoryUsage()
  const baselines = async (round: number, c: number) => {
    await measure(RAW, round, c, () => raw(c))
    await measure(READ, round, c, () => readOnly(c))
  }
  for (let round = 1; round <= ROUNDS; round++) {
    if (round % 2 === 1) await baselines(round, CONCURRENCY)
    await backfillRuns(round, CONCURRENCY, true)
    if (round % 2 === 0) await baselines(round, CONCURRENCY)
  }
  for (const c of SWEEP ? [1, 8].filter((c) => c !== CONCURRENCY) : []) {
    await baselines(0, c)
    await backfillRuns(0, c, false)
  }
  gc()
  memAfter = process.memoryUsage()
} finally {
  await network.stop()
  await ferret?.stop()
}

// Medians over the rounds at the main concurrency (round 0 is the sweep); ratios are per round.
const at = (name: string, c = CONCURRENCY) => rows.filter((r) => r.name === name && r.concurrency === c && (c !== CONCURRENCY || r.round > 0))
const perRound = (a: string, b: string, f: (x: Row, y: Row) => number) => median(at(a).map((x) => f(x, at(b).find((y) => y.round === x.round)!)))
const efficiency = perRound(RAW, RUN1, (raw, run) => raw.ms / run.ms)
const run2Share = perRound(RUN2, RUN1, (two, one) => two.ms / one.ms)
const worst = (xs: Row[], f: (m: Memory) => number) => Math.max(...xs.map((x) => f(x.mem)))
const line = (name: string, c = CONCURRENCY) => {
  const xs = at(name, c)
  const ms = median(xs.map((x) => x.ms))
  const rawMs = median(at(RAW, c).map((x) => x.ms))
  const rate = (n: number) => Math.round(n / (ms / 1000)).toLocaleString('en-US')
  return [name, String(c), ms.toFixed(0), formatRatio(rawMs / ms), rate(REPOS), rate(REPOS * MOODS), `+${mb(worst(xs, (m) => m.rssPeak))}`, `+${mb(worst(xs, (m) => m.heapPeak))}`, mb(worst(xs, (m) => m.heapKept))]
}
const sweep = SWEEP ? [1, 8].filter((c) => c !== CONCURRENCY).flatMap((c) => [RAW, READ, RUN1].map((n) => line(n, c))) : []
const phaseRows = rows.filter((r) => r.name !== RAW && r.round <= 1).map((r) => {
  const p = r.probe.phases
  // A DID is resolved inside latestRev (unchanged repos) or read (the others), never both here.
  // prepare's own MongoDB work: the findOne of the rev read last and, when unchanged, the dequeue.
  const inPrepare = p.prepare === 0 ? 0 : p.prepare - p.read - p.latestRev
  const verify = p.read === 0 ? 0 : p.read - p.getRepo - (p.latestRev === 0 ? p.resolve : 0)
  const commandsMs = [...r.probe.commands.values()].reduce((a, c) => a + c.ms, 0)
  const batches = r.probe.batches.length ? `${r.probe.batches.length} (${[...new Set(r.probe.batches)].join('/')})` : '0'
  const top = [...r.probe.commands].sort((a, b) => b[1].ms - a[1].ms).slice(0, 5).map(([n, c]) => `${n} ${c.count}x ${c.ms.toFixed(0)} ms${c.docs ? ` (${c.docs} docs)` : ''}`)
  return [
    `${r.name}, c=${r.concurrency}`,
    ...[r.ms, p.resolve, p.latestCommit, p.getRepo, verify, inPrepare + p.applyMany, inPrepare, p.applyMany].map((v) => v.toFixed(0)),
    batches,
    commandsMs.toFixed(0),
    String(docsWritten(r.probe)),
    top.join(', '),
  ]
})
const run2Failed = problems.some((p) => p.startsWith('run 2'))
const out = [
  `backfill: ${REPOS} repos x ${MOODS} moods, concurrency ${CONCURRENCY}, batches of up to ${BATCH} repos, ${ROUNDS} rounds (median; ratios per round), started ${started.toISOString()}`,
  `repo CARs: ${mb(carBytes)} MB in all, ${(carBytes / REPOS / 1024).toFixed(1)} KiB a repo; PDS + PLC in this process (dev-env)`,
  `MongoDB: ${process.env.MONGODB_URI ? 'MONGODB_URI' : 'FerretDB (SQLite backend, test rig)'}; machine: ${machineNote()}`,
  '',
  table(['case', 'conc.', 'ms (median)', 'raw/case', 'repos/s', 'moods/s', 'peak RSS MB', 'peak heap MB', 'heap kept MB'], [...[RAW, READ, RUN1, RUN2, FORCED].map((n) => line(n)), ...sweep]),
  '',
  table(['target', 'value', 'verdict'], [
    ['efficiency = raw time / backfill run 1 time', formatRatio(efficiency), verdict(efficiency, 0.7)],
    ['run 2 (unchanged) time / run 1 time', `${(run2Share * 100).toFixed(1)}%`, run2Share < 0.1 ? 'met (< 10%)' : 'MISSED (>= 10%)'],
    ['run 2 writes (applied; documents changed)', run2Failed ? 'some' : '0', run2Failed ? 'MISSED' : 'met'],
  ]),
  '',
  'Where the time goes (round 1 and the sweep): per-repo latencies summed over the repos, plus the batch writes, ms; at c=1 they add up to the wall time.',
  'verify = read - getRepo - resolve (CAR parse, CID and signature checks, MST walk, record decode); mongo = in prepare + applyMany;',
  'in prepare = prepare - read - latestRev (waiting on a shared listRepos answer; the chunk find and the dequeue are outside prepare); applyMany includes building the ops (lexicon checks); commands = driver-reported durations summed.',
  table(['run', 'wall', 'resolve', 'latestCommit', 'getRepo', 'verify', 'mongo', 'in prepare', 'applyMany', 'batches (repos)', 'commands', 'docs written', 'top MongoDB commands (count, summed ms)'], phaseRows),
  '',
  `process after the warm-up -> after all ${rows.length} runs (full GC): RSS ${mb(memBefore.rss)} -> ${mb(memAfter.rss)} MB, heap ${mb(memBefore.heapUsed)} -> ${mb(memAfter.heapUsed)} MB`,
  problems.length ? `CHECKS FAILED:\n${problems.map((p) => `- ${p}`).join('\n')}` : `checks: every run 1 inserted ${REPOS * MOODS}; run 2 changed 0 documents; the forced run found every record unchanged`,
]
process.stdout.write(`${out.join('\n')}\n`)
process.exitCode = problems.length ? 1 : 0
