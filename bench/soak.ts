/**
 * Soak: does the indexer's memory stay flat over a long stream?
 *
 *   bash scripts/with-node.sh node bench/soak.ts --sink none  [--events 1000000] [--records 2000]
 *   bash scripts/with-node.sh node bench/soak.ts --sink mongo [--events 100000]  [--records 90]
 *
 * A child process (bench/soak-server.ts) serves the Jetstream v1 frames on 127.0.0.1; this
 * process runs the real pipeline, JetstreamSource -> Indexer (socket, read-ahead queue,
 * batcher, validation, user lookup, metrics), and samples its own RSS and heap as events are
 * applied. The baseline is the sample at 5% (after warm-up), taken in the same run.
 *
 *   --sink none   The store's MongoDB parts are in-memory no-ops that count what they get: the
 *                 pipeline's own memory over many events.
 *   --sink mongo  The real Store (MongoDB driver) against MONGODB_URI, or a FerretDB started
 *                 here. FerretDB v1 scans the whole collection for each update and deadlocks on
 *                 an update command of 100+ statements, so this run is shorter and the working
 *                 set under 100 records (200 on MONGODB_URI); the database is checked, dropped.
 *
 *   --dids D      DIDs the records belong to (default 50; record r is DID r % D's).
 *   --stall-seconds S  Give up (exit 2) when nothing is applied for S seconds (default 60).
 *   --gc          A full GC before each sample (heap = live objects; slows the run a little).
 *
 * Events act on record i % R over D DIDs; successive passes create, update and delete every
 * record. Prints a Markdown table on stdout, progress on stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Db } from 'mongodb'
import { pino } from 'pino'
import { Indexer } from '../src/ingest/indexer.ts'
import { JetstreamSource } from '../src/ingest/jetstream.ts'
import { COLLECTIONS, type MoodDoc, type UserDoc } from '../src/store/collections.ts'
import type { ApplyResult, MoodOp } from '../src/store/records.ts'
import type { QuarantineEntry } from '../src/store/quarantine.ts'
import type { LogLevel } from '../src/config.ts'
import { createLogger } from '../src/logger.ts'
import { Store } from '../src/store/store.ts'
import { FerretDbServer } from '../rig/ferretdb.ts'
import { formatRate, log as progress, machineNote, option, table } from './lib-table.ts'
import { didOf, moodOf, operationOf, rkeyOf, whenOf, type SoakPlan } from './soak-server.ts'

type Sink = 'none' | 'mongo'

const MB = 1024 * 1024
const RSS_LIMIT_MB = 200
const FLAT_LIMIT = 1.2
const BASELINE_AT = 0.05
const SAMPLE_EVERY = 0.05
/**
 * FerretDB v1.24 (SQLite) keeps each statement's query open until the whole `update` command
 * ends, and its pool has 100 connections: a command of 100+ updates waits forever. A batch
 * collapses to one op per record, so fewer records than that keeps every command under it.
 */
const FERRETDB_MAX_RECORDS = 90

/** `--gc`: a full GC before each sample, so `heap` is what is live (a leak shows as a trend). */
const forceGc: (() => void) | undefined = process.argv.includes('--gc')
  ? (setFlagsFromString('--expose-gc'), runInNewContext('gc') as () => void)
  : undefined

function sinkOption(): Sink {
  const argv = process.argv.slice(2)
  const i = argv.findIndex((a) => a === '--sink' || a.startsWith('--sink='))
  const value = i < 0 ? (process.env.SOAK_SINK ?? 'none') : argv[i]!.includes('=') ? argv[i]!.slice('--sink='.length) : argv[i + 1]
  if (value !== 'none' && value !== 'mongo') throw new Error(`--sink must be none or mongo (got ${JSON.stringify(value)})`)
  return value
}

interface Row {
  events: number
  rssMb: number
  heapMb: number
  /** Memory outside the JS heap: Buffers (socket frames), mostly. */
  externalMb: number
  /** Events per second since the previous row. */
  rate: number
  /** V8's young generation as reserved (it grows under a heavy allocation rate). */
  newSpaceMb: number
}

const newSpaceMb = () => (getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / MB

interface Counts {
  upserts: number
  deletes: number
  quarantined: number
  cursorSaves: number
}

/** Starts bench/soak-server.ts and reads its URL. */
async function startServer(plan: SoakPlan): Promise<{ url: string; child: ChildProcess }> {
  const script = fileURLToPath(new URL('./soak-server.ts', import.meta.url))
  const args = ['--events', plan.events, '--records', plan.records, '--dids', plan.dids, '--base', plan.baseUs].map(String)
  // stdin stays open: the server exits when it closes, so it never outlives us.
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      const match = /^SOAK_SERVER (\S+)/.exec(line)
      if (match) resolve(match[1]!)
    })
    child.once('exit', (code) => reject(new Error(`the soak server exited with code ${code} before it was ready`)))
  })
  return { url, child }
}

/** A Store whose MongoDB parts do nothing but count: only what Indexer uses is there. */
function countingStore(counts: Counts): Store {
  const empty = { toArray: async () => [] }
  const db = { collection: () => ({ find: () => empty }) } as unknown as Db
  const fake = {
    db,
    moods: {
      apply: async (ops: readonly MoodOp[]): Promise<ApplyResult> => {
        let upserts = 0
        for (const op of ops) if (op.kind === 'upsert') upserts++
        counts.upserts += upserts
        counts.deletes += ops.length - upserts
        // The Indexer only counts the fields it gets (metrics); the others would all be 0.
        const result: Partial<ApplyResult> = { updated: upserts, deleted: ops.length - upserts }
        return result as ApplyResult
      },
      hideDid: async () => 0,
      restoreDid: async () => 0,
      deleteDid: async () => 0,
    },
    quarantine: {
      add: async (entries: readonly QuarantineEntry[]) => {
        counts.quarantined += entries.length
      },
    },
    gaps: { record: async () => 0, queueBackfill: async () => 0 },
    cursors: {
      get: async () => undefined,
      save: async () => {
        counts.cursorSaves++
      },
    },
  }
  return fake as unknown as Store
}

/** What the ops of N events must add up to: one op per event. */
function expectedCounts(plan: SoakPlan): { upserts: number; deletes: number } {
  let deletes = 0
  for (let i = 0; i < plan.events; i++) if (operationOf(plan, i) === 'delete') deletes++
  return { upserts: plan.events - deletes, deletes }
}

/** Every other DID is a platform user's (`users.atproto.did`), so lookups both hit and miss. */
function platformUsers(plan: SoakPlan): { _id: string; atproto: { did: string } }[] {
  return Array.from({ length: Math.ceil(plan.dids / 2) }, (_, k) => ({ _id: `soak-user-${k}`, atproto: { did: didOf(plan, k * 2) } }))
}

function userOf(plan: SoakPlan, record: number): string | null {
  const d = record % plan.dids
  return d % 2 === 0 ? `soak-user-${d / 2}` : null
}

/** Compares the moods collection with what the last event on each record says it holds. */
async function checkMoods(db: Db, plan: SoakPlan): Promise<string[]> {
  const docs = await db.collection<MoodDoc>(COLLECTIONS.moods).find().toArray()
  const byKey = new Map(docs.map((d) => [`${d.atproto?.did}/${d.atproto?.rkey}`, d]))
  const problems: string[] = []
  const records = Math.min(plan.records, plan.events)
  if (docs.length !== records) problems.push(`${docs.length} documents for ${records} records`)
  for (let r = 0; r < records; r++) {
    const last = r + Math.floor((plan.events - 1 - r) / plan.records) * plan.records
    const key = `${didOf(plan, r)}/${rkeyOf(plan, r)}`
    const doc = byKey.get(key)
    if (!doc) {
      problems.push(`${key}: missing`)
      continue
    }
    if (operationOf(plan, last) === 'delete') {
      if (doc.deleted !== true) problems.push(`${key}: should be deleted (event ${last})`)
    } else if (doc.deleted === true || doc.mood !== moodOf(last) || doc.when.toISOString() !== whenOf(plan, last)) {
      problems.push(`${key}: stale (want event ${last}: ${JSON.stringify(moodOf(last))}, got ${JSON.stringify(doc.mood)}${doc.deleted ? ' deleted' : ''})`)
    }
    if (doc.user !== userOf(plan, r)) problems.push(`${key}: user ${doc.user}, want ${userOf(plan, r)}`)
    if (problems.length > 5) break
  }
  return problems
}

async function main(): Promise<void> {
  const sink = sinkOption()
  const plan: SoakPlan = {
    events: option('events', 'SOAK_EVENTS', sink === 'none' ? 1_000_000 : 100_000),
    records: option('records', 'SOAK_RECORDS', sink === 'none' ? 2000 : process.env.MONGODB_URI ? 200 : FERRETDB_MAX_RECORDS),
    dids: option('dids', 'SOAK_DIDS', 50),
    baseUs: Date.now() * 1000 - 3_600_000_000, // an hour ago: inside any replay window
  }
  const lastCursor = plan.baseUs + plan.events - 1
  // Problems (MongoDB retries, reconnects) on stderr; LOG_LEVEL=debug shows more.
  const log = createLogger({ level: (process.env.LOG_LEVEL as LogLevel | undefined) ?? 'warn', destination: pino.destination(2) })
  progress(`soak: --sink ${sink}, ${plan.events} events over ${plan.records} records and ${plan.dids} DIDs (${machineNote()})`)

  const server = await startServer(plan)
  const counts: Counts = { upserts: 0, deletes: 0, quarantined: 0, cursorSaves: 0 }
  let store: Store
  let ferret: FerretDbServer | undefined
  let dbLabel = 'none (in-memory no-op store)'
  if (sink === 'none') {
    store = countingStore(counts)
  } else {
    let uri = process.env.MONGODB_URI
    if (!uri) {
      if (plan.records > FERRETDB_MAX_RECORDS) {
        throw new Error(`--records ${plan.records}: FerretDB v1 deadlocks on an update command of 100 or more statements (see docs/benchmarks/soak.md); use at most ${FERRETDB_MAX_RECORDS} records, or MONGODB_URI`)
      }
      ferret = await FerretDbServer.start()
      uri = ferret.uri
      dbLabel = 'FerretDB v1 (SQLite), started by the benchmark'
    } else dbLabel = 'MONGODB_URI'
    store = new Store({ mongodb: { uri, db: `moodsync_soak_${process.pid}` }, logger: log })
    await store.start()
    await store.db.collection<UserDoc>(COLLECTIONS.users).insertMany(platformUsers(plan))
  }

  const source = new JetstreamSource({ url: server.url, log })
  const indexer = new Indexer({ store, source, log })
  const abort = new AbortController()
  const applied = () => (indexer.state.appliedCursor === undefined ? 0 : indexer.state.appliedCursor - plan.baseUs + 1)

  const memory = () => {
    forceGc?.()
    return process.memoryUsage()
  }
  const startMem = memory()
  const rows: Row[] = [{ events: 0, rssMb: startMem.rss / MB, heapMb: startMem.heapUsed / MB, externalMb: startMem.external / MB, rate: 0, newSpaceMb: newSpaceMb() }]
  let peakRssMb = 0
  let last = { events: 0, at: performance.now() }
  let nextSample = 0.01
  const started = performance.now()
  let finished = started
  const sample = (events: number) => {
    const mem = memory()
    const now = performance.now()
    rows.push({ events, rssMb: mem.rss / MB, heapMb: mem.heapUsed / MB, externalMb: mem.external / MB, rate: ((events - last.events) / (now - last.at)) * 1000, newSpaceMb: newSpaceMb() })
    last = { events, at: now }
    progress(`  ${events} events (${((events / plan.events) * 100).toFixed(0)}%), RSS ${(mem.rss / MB).toFixed(1)} MB, heap ${(mem.heapUsed / MB).toFixed(1)} MB`)
  }
  // A timer, not a loop: it wakes 20 times a second to look at the progress and the RSS.
  const stallMs = option('stall-seconds', 'SOAK_STALL_SECONDS', 60) * 1000
  let progressAt = { events: 0, at: Date.now() }
  const ticker = setInterval(() => {
    const events = applied()
    peakRssMb = Math.max(peakRssMb, process.memoryUsage.rss() / MB)
    if (events !== progressAt.events) progressAt = { events, at: Date.now() }
    else if (Date.now() - progressAt.at > stallMs) {
      // A store call that never returns cannot be aborted: report, clean up, exit.
      progress(`STALLED: no event applied for ${stallMs / 1000} s at ${events} of ${plan.events} (store failing since: ${indexer.state.storeFailingSince ?? 'no'}; source connected: ${source.stats.connected})`)
      clearInterval(ticker)
      server.child.stdin!.end()
      void (ferret?.stop() ?? Promise.resolve()).finally(() => process.exit(2))
      return
    }
    if (nextSample <= 1 + 1e-9 && events >= Math.round(nextSample * plan.events)) {
      sample(events)
      // One row per tick even when progress jumped past several marks.
      while (nextSample <= 1 + 1e-9 && events >= Math.round(nextSample * plan.events)) {
        nextSample = nextSample < BASELINE_AT ? BASELINE_AT : Math.round((nextSample + SAMPLE_EVERY) * 100) / 100
      }
    }
    if (indexer.state.appliedCursor !== undefined && indexer.state.appliedCursor >= lastCursor && !abort.signal.aborted) {
      finished = performance.now()
      abort.abort()
    }
  }, 50)
  try {
    await indexer.run(abort.signal)
  } finally {
    clearInterval(ticker)
    server.child.stdin!.end()
  }

  const problems: string[] = []
  if (applied() !== plan.events) problems.push(`the indexer stopped at ${applied()} of ${plan.events} events`)
  if (source.stats.reconnects > 0) problems.push(`the source reconnected ${source.stats.reconnects} times`)
  if (sink === 'none') {
    const want = expectedCounts(plan)
    if (counts.upserts !== want.upserts || counts.deletes !== want.deletes) {
      problems.push(`ops: ${counts.upserts} upserts and ${counts.deletes} deletes, want ${want.upserts} and ${want.deletes}`)
    }
    if (counts.quarantined > 0) problems.push(`${counts.quarantined} events were quarantined`)
  } else {
    const quarantined = await store.db.collection(COLLECTIONS.quarantine).countDocuments()
    if (quarantined > 0) problems.push(`${quarantined} entries in quarantine`)
    problems.push(...(await checkMoods(store.db, plan)))
    const saved = await store.cursors.get(source.id)
    if (saved !== lastCursor) problems.push(`saved cursor ${saved}, want ${lastCursor}`)
    await store.db.dropDatabase()
    await store.destroy()
    await ferret?.stop()
  }

  const baseline = rows.find((r) => r.events >= BASELINE_AT * plan.events)
  if (!baseline) throw new Error('no baseline sample')
  const after = rows.filter((r) => r.events >= baseline.events)
  const maxRss = Math.max(...after.map((r) => r.rssMb))
  const seconds = (finished - started) / 1000

  console.log(`\n## Soak, --sink ${sink}: ${plan.events.toLocaleString('en-US')} events, ${plan.records} records, ${plan.dids} DIDs\n`)
  console.log(`Store: ${dbLabel}.${forceGc ? ' A full GC ran before each sample (--gc).' : ''} ${machineNote()}.\n`)
  console.log(
    table(
      ['events applied', '% of run', 'RSS MB', 'RSS / baseline', forceGc ? 'heap MB (after GC)' : 'heap MB', 'external MB', 'events/s'],
      rows.map((r) => [
        r.events === 0 ? '0 (start)' : r.events.toLocaleString('en-US'),
        `${((r.events / plan.events) * 100).toFixed(0)}%${r === baseline ? ' (baseline)' : ''}`,
        r.rssMb.toFixed(1),
        r.events >= baseline.events ? `${(r.rssMb / baseline.rssMb).toFixed(2)}x` : '—',
        r.heapMb.toFixed(1),
        r.externalMb.toFixed(1),
        r.events === 0 ? '—' : formatRate(r.rate),
      ]),
    ),
  )
  const half = rows.find((r) => r.events >= plan.events / 2)!
  const end = rows.at(-1)!
  const drift = end.rssMb - half.rssMb
  const peakProcessMb = process.resourceUsage().maxRSS / 1024
  const flat = maxRss / baseline.rssMb
  console.log(
    `\nbaseline (${baseline.events.toLocaleString('en-US')} events) ${baseline.rssMb.toFixed(1)} MB; max sampled after it ${maxRss.toFixed(1)} MB = ${flat.toFixed(2)}x; ` +
      `peak RSS seen by the 50 ms timer ${peakRssMb.toFixed(1)} MB; process peak (getrusage) ${peakProcessMb.toFixed(1)} MB`,
  )
  console.log(
    `second half: RSS ${half.rssMb.toFixed(1)} -> ${end.rssMb.toFixed(1)} MB (${drift >= 0 ? '+' : ''}${drift.toFixed(1)} MB over ${(end.events - half.events).toLocaleString('en-US')} events); ` +
      `V8 new space ${rows[0]!.newSpaceMb.toFixed(1)} MB at the start, ${baseline.newSpaceMb.toFixed(1)} at the baseline, ${end.newSpaceMb.toFixed(1)} at the end`,
  )
  console.log(`${plan.events.toLocaleString('en-US')} events in ${seconds.toFixed(1)} s = ${formatRate(plan.events / seconds)} events/s; ${indexer.metrics.batchSize.count.toLocaleString('en-US')} batches (mean ${(plan.events / indexer.metrics.batchSize.count).toFixed(0)} events); source frames ${source.stats.framesReceived.toLocaleString('en-US')}${sink === 'none' ? `; cursor saves ${counts.cursorSaves}` : ''}`)
  const verdicts = [
    `RSS < ${RSS_LIMIT_MB} MB: ${peakProcessMb < RSS_LIMIT_MB ? 'met' : 'MISSED'} (peak ${peakProcessMb.toFixed(0)} MB)`,
    `flat (max / baseline <= ${FLAT_LIMIT}): ${flat <= FLAT_LIMIT ? 'met' : 'MISSED'} (${flat.toFixed(2)}x)`,
    `correct: ${problems.length === 0 ? 'yes' : `NO: ${problems.join('; ')}`}`,
  ]
  console.log(verdicts.join('\n'))
  if (problems.length > 0 || peakProcessMb >= RSS_LIMIT_MB || flat > FLAT_LIMIT) process.exitCode = 1
}

await main()
