/**
 * Soak: does the indexer's memory stay flat over a long stream?
 *
 *   node bench/soak.ts --sink none  [--events 1000000] [--records 200] [--dids 50] [--gc] [--tiny]
 *   node bench/soak.ts --sink mongo [--events 100000]  [--records 90]
 *
 * The bench's frame server, in a child process (its memory and CPU are not the indexer's),
 * serves the soak's Jetstream v1 frames, built one at a time as they are sent; this process
 * runs JetstreamSource -> Indexer (socket, read-ahead queue, batcher, validation, user lookup,
 * metrics) and samples its own RSS and heap as events are applied. The baseline is the sample
 * at 5% (after warm-up), taken in the same run.
 *
 *   --sink none   rig/memory-store.ts's in-memory IndexerStore: the pipeline's own memory. The
 *                 store keeps the newest op of each record: with thousands of records each op
 *                 lives long enough to reach V8's old space, and RSS then measures the store's
 *                 garbage, so the working set is 200 records.
 *   --sink mongo  the real Store on MONGODB_URI, or the rig's MongoDB-wire server. FerretDB v1 scans
 *                 the whole collection for each update and stalls on an update command of 100+
 *                 statements, so the run is shorter and the working set under 100 records.
 *   --gc          a full GC before each sample (heap = live objects).
 *   --stall-seconds S  fail when nothing is applied for S seconds (default 60).
 *
 * Event i acts on record i % R, owned by DID (i % R) % D; successive passes create, update and
 * delete every record. The kill -9 trials live in test/integration/ingest-resilience.test.ts.
 */
import { getHeapSpaceStatistics } from 'node:v8'
import type { Db } from 'mongodb'
import { Indexer, type IndexerStore } from '../src/ingest/indexer.ts'
import { JetstreamSource } from '../src/ingest/jetstream.ts'
import { COLLECTIONS, type MoodDoc, type UserDoc } from '../src/store/collections.ts'
import { Store } from '../src/store/store.ts'
import { MemoryStore } from '../rig/memory-store.ts'
import { soak, type SoakPlan } from './lib/fixtures.ts'
import { fmt, fullGc, int, knobs, progress, script, type Result, type RunOptions } from './lib/report.ts'
import { startFrameServer, startMongo, type Mongo } from './lib/servers.ts'
import { testMongoKind } from '../rig/mongo-server.ts'
import { valueOf } from '../src/metrics.ts'

const SIZES = {
  tiny: { sink: 'none', events: 3_000, records: 30, dids: 10, gc: false, stallSeconds: 20 },
  full: { sink: 'none', events: 0, records: 0, dids: 50, gc: false, stallSeconds: 60 },
}
const MB = 2 ** 20
const RSS_LIMIT_MB = 200
const FLAT_LIMIT = 1.2
const BASELINE_AT = 0.05
/** FerretDB v1.24 (SQLite) deadlocks on an update command of 100+ statements; a batch collapses to one op per record. */
const FERRETDB_MAX_RECORDS = 90

interface Row {
  events: number
  rssMb: number
  heapMb: number
  externalMb: number
  /** Events per second since the previous row. */
  rate: number
  newSpaceMb: number
}

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const o = knobs(opts, SIZES)
  if (o.sink !== 'none' && o.sink !== 'mongo') throw new Error(`--sink must be none or mongo (got ${o.sink})`)
  const external = opts.mongoUri ?? process.env.MONGODB_URI
  const onFerretDb = !external && testMongoKind() === 'ferretdb'
  const plan: SoakPlan = {
    events: o.events || (o.sink === 'none' ? 1_000_000 : 100_000),
    records: o.records || (o.sink === 'mongo' && onFerretDb ? FERRETDB_MAX_RECORDS : 200),
    dids: o.dids,
    baseUs: Date.now() * 1000 - 3_600_000_000, // an hour ago: inside any replay window
  }
  if (o.sink === 'mongo' && onFerretDb && plan.records > FERRETDB_MAX_RECORDS) throw new Error(`--records ${plan.records}: FerretDB v1 stalls on update commands of 100+ statements; use at most ${FERRETDB_MAX_RECORDS}, or another server`)
  const lastCursor = plan.baseUs + plan.events - 1
  // Every other DID is a platform user's, so user lookups both hit and miss.
  const users = Array.from({ length: Math.ceil(plan.dids / 2) }, (_, k) => ({ _id: `soak-user-${k}`, did: soak.did(plan, k * 2) }))

  const fixtures = new URL('./lib/fixtures.ts', import.meta.url).href
  const server = await startFrameServer({ module: fixtures, name: 'soakFrames', args: plan }, { where: 'process', path: '/subscribe' })
  let mongo: Mongo | undefined
  let real: Store | undefined
  const memory = new MemoryStore()
  for (const u of users) memory.owners.set(u.did, u._id)
  if (o.sink === 'mongo') {
    mongo = await startMongo(external)
    real = new Store({ mongodb: { uri: mongo.uri, db: `bench_soak_${process.pid}` } })
    await real.start()
    await real.db.collection<UserDoc>(COLLECTIONS.users).insertMany(users.map((u) => ({ _id: u._id, atproto: { did: u.did } })) as UserDoc[])
  }
  const store: IndexerStore = real ?? memory

  const source = new JetstreamSource({ url: server.url })
  const indexer = new Indexer({ store, source })
  const abort = new AbortController()
  const applied = () => (indexer.state.appliedCursor === undefined ? 0 : indexer.state.appliedCursor - plan.baseUs + 1)
  const sample = (events: number, last?: Row & { at: number }): Row & { at: number } => {
    if (o.gc) fullGc()
    const mem = process.memoryUsage()
    const at = performance.now()
    const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0
    return { events, at, rssMb: mem.rss / MB, heapMb: mem.heapUsed / MB, externalMb: mem.external / MB, rate: last ? ((events - last.events) / (at - last.at)) * 1000 : 0, newSpaceMb: newSpace / MB }
  }
  const rows = [sample(0)]
  let peakRssMb = 0
  let nextSample = 0.01
  const started = performance.now()
  let finished = started
  let progressAt = { events: 0, at: Date.now() }
  // A timer, not a loop: 20 times a second it looks at the progress and the RSS.
  let ticker: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    ticker = setInterval(() => {
      const events = applied()
      peakRssMb = Math.max(peakRssMb, process.memoryUsage.rss() / MB)
      if (events !== progressAt.events) progressAt = { events, at: Date.now() }
      else if (Date.now() - progressAt.at > o.stallSeconds * 1000) {
        clearInterval(ticker)
        reject(new Error(`STALLED: no event applied for ${o.stallSeconds} s at ${events} of ${plan.events} (store failing since: ${indexer.state.storeFailingSince ?? 'no'})`))
      }
      if (nextSample <= 1 + 1e-9 && events >= Math.round(nextSample * plan.events)) {
        rows.push(sample(events, rows.at(-1)))
        progress(`  ${events} events (${fmt((events / plan.events) * 100, 0)}%), RSS ${fmt(rows.at(-1)!.rssMb)} MB`)
        while (nextSample <= 1 + 1e-9 && events >= Math.round(nextSample * plan.events)) nextSample = nextSample < BASELINE_AT ? BASELINE_AT : Math.round((nextSample + 0.05) * 100) / 100
      }
      if (events >= plan.events && !abort.signal.aborted) {
        finished = performance.now()
        abort.abort()
        clearInterval(ticker)
      }
    }, 50)
  })
  const counts: Result['counts'] = {}
  try {
    await Promise.race([indexer.run(abort.signal), stalled])
    counts['events applied'] = [applied(), plan.events]
    counts['source reconnects'] = [source.stats.reconnects, 0]
    const deletes = Array.from({ length: plan.events }, (_, i) => soak.operation(plan, i)).filter((op) => op === 'delete').length
    const live = Array.from({ length: Math.min(plan.records, plan.events) }, (_, r) => soak.operation(plan, r + Math.floor((plan.events - 1 - r) / plan.records) * plan.records)).filter((op) => op !== 'delete').length
    if (real) {
      counts['quarantined'] = [await real.db.collection(COLLECTIONS.quarantine).countDocuments(), 0]
      counts['live moods in MongoDB'] = [await real.db.collection(COLLECTIONS.moods).countDocuments({ deleted: { $ne: true } }), live]
      counts['documents not as the last event says'] = [await wrongDocs(real.db, plan), 0]
      counts['saved cursor'] = [(await real.cursors.get(source.id))?.cursor ?? 0, lastCursor]
    } else {
      counts['quarantined'] = [memory.quarantined.length, 0]
      counts['upserts applied'] = [memory.applied.inserted + memory.applied.updated, plan.events - deletes]
      counts['deletes applied'] = [memory.applied.deleted, deletes]
      counts['live moods in the store'] = [memory.live(COLLECTIONS.moods), live]
    }
  } finally {
    clearInterval(ticker)
    abort.abort()
    await server.stop()
    if (real) await real.db.dropDatabase().finally(() => real.destroy())
    await mongo?.stop()
  }

  const baseline = rows.find((r) => r.events >= BASELINE_AT * plan.events) ?? rows.at(-1)!
  const after = rows.filter((r) => r.events >= baseline.events)
  const flat = Math.max(...after.map((r) => r.rssMb)) / baseline.rssMb
  const peakMb = process.resourceUsage().maxRSS / 1024
  const seconds = (finished - started) / 1000
  return {
    title: `Soak, --sink ${o.sink}: ${int(plan.events)} events, ${plan.records} records, ${plan.dids} DIDs; store: ${o.sink === 'none' ? 'rig/memory-store.ts (in memory)' : mongo!.label}${o.gc ? '; a full GC before each sample' : ''}`,
    tables: [
      {
        headers: ['events applied', '% of run', 'RSS MB', 'RSS / baseline', o.gc ? 'heap MB (after GC)' : 'heap MB', 'external MB', 'new space MB', 'events/s'],
        rows: rows.map((r) => [r.events === 0 ? '0 (start)' : int(r.events), `${fmt((r.events / plan.events) * 100, 0)}%${r === baseline ? ' (baseline)' : ''}`, fmt(r.rssMb), r.events >= baseline.events ? `${fmt(r.rssMb / baseline.rssMb, 2)}x` : '—', fmt(r.heapMb), fmt(r.externalMb), fmt(r.newSpaceMb), r.events === 0 ? '—' : int(r.rate)]),
      },
    ],
    notes: [
      `baseline (${int(baseline.events)} events) ${fmt(baseline.rssMb)} MB; highest sample after it ${fmt(flat * baseline.rssMb)} MB = ${fmt(flat, 2)}x; peak RSS seen by the 50 ms timer ${fmt(peakRssMb)} MB; process peak (getrusage) ${fmt(peakMb)} MB`,
      `${int(plan.events)} events in ${fmt(seconds)} s = ${int(plan.events / seconds)} events/s; ${int(await valueOf(indexer.metrics.batchSize))} batches; source frames ${int(source.stats.framesReceived)}`,
      `RSS < ${RSS_LIMIT_MB} MB: ${peakMb < RSS_LIMIT_MB ? 'met' : 'MISSED'} (peak ${fmt(peakMb, 0)} MB); flat (max / baseline <= ${FLAT_LIMIT}): ${flat <= FLAT_LIMIT ? 'met' : 'MISSED'} (${fmt(flat, 2)}x)`,
    ],
    metrics: { 'events/s': plan.events / seconds, 'peak RSS MB': peakMb, 'max RSS / baseline': flat },
    counts,
  }
}

/** Documents that are not what the last event on their record says (live with its mood and when, or deleted), or have the wrong user. */
async function wrongDocs(db: Db, plan: SoakPlan): Promise<number> {
  const docs = new Map((await db.collection<MoodDoc>(COLLECTIONS.moods).find().toArray()).map((d) => [`${d.atproto?.did}/${d.atproto?.rkey}`, d]))
  let wrong = 0
  for (let r = 0; r < Math.min(plan.records, plan.events); r++) {
    const last = r + Math.floor((plan.events - 1 - r) / plan.records) * plan.records
    const doc = docs.get(`${soak.did(plan, r)}/${soak.rkey(plan, r)}`)
    const d = r % plan.dids
    const ok = soak.operation(plan, last) === 'delete' ? doc?.deleted === true : doc !== undefined && doc.deleted !== true && doc.mood === soak.mood(last) && doc.when.toISOString() === soak.when(plan, last)
    if (!ok || doc!.user !== (d % 2 === 0 ? `soak-user-${d / 2}` : null)) wrong++
  }
  return wrong
}

await script(import.meta, run)
