/**
 * Benchmark 4: write-to-visible latency, in both source modes.
 *
 * A real PDS (TestNetwork), FerretDB (or MONGODB_URI) and an IngestService (test/rig/ingest.ts)
 * reading either the PDS's firehose directly or a Jetstream stand-in bridged from it. Moods are
 * written steadily, one at a time about every 30 ms (so the PDS sequencer never idles), and
 * for each one:
 *   t0 = when this process received the PDS's firehose frame for it (our own raw listener on
 *        subscribeRepos): the moment the PDS emitted it, give or take one loopback hop;
 *   t1 = when the indexer's MoodStore.apply() that wrote it resolved, i.e. MongoDB
 *        acknowledged the write and any reader sees the document (apply is wrapped here);
 *   t2 = when an independent reader, asked at t1, got the document back (a cross-check).
 * Reported: t1 - t0 (the latency beyond what the PDS itself takes), split into "source"
 * (t0 -> the event leaves the source: transport, parsing, for the firehose signature and
 * proof checks, for Jetstream the bridge), "queue" (-> the indexer calls MoodStore.apply:
 * batching, waiting for the previous batch, user lookup) and "store" (-> t1: apply's MongoDB
 * reads and write). Baseline in the same run: round trips to the same server probed by a
 * bare client while the benchmark runs, the key lookup and the insert that MoodStore.apply
 * makes for a new mood, back to back.
 *
 * Two what-if variants run beside the deployed code: the same modes with the store change
 * the doc proposes (a new record is inserted first; the lookup only runs when the insert
 * collides), prototyped here by wrapping MoodStore.apply. src/ is not touched.
 *
 *   bash scripts/with-node.sh node bench/latency.ts
 *   env: BENCH_MOODS (100 per round and variant), BENCH_ROUNDS (2), BENCH_INTERVAL_MS (30), MONGODB_URI
 */
import { randomBytes } from 'node:crypto'
import { decodeAll } from '@atproto/lex-cbor'
import { MongoClient, ObjectId } from 'mongodb'
import WebSocket from 'ws'
import { parseConfig } from '../src/config.ts'
import type { IngestEvent, Source } from '../src/ingest/events.ts'
import { createSource, type IngestService } from '../src/app/service.ts'
import { silentLogger } from '../src/logger.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { isDuplicateKey } from '../src/store/mongo-errors.ts'
import type { ApplyResult, MoodOp } from '../src/store/records.ts'
import { FerretDbServer } from '../rig/ferretdb.ts'
import { startIngest } from '../rig/ingest.ts'
import { JetstreamServer } from '../rig/jetstream-server.ts'
import type { TestDb } from '../rig/mongo.ts'
import { TestNetwork, type TestAccount } from '../rig/network.ts'
import { waitFor } from '../rig/wait.ts'
import { fmt, machineNote, max, median, percentile, progress, sleep, table } from './lib-stats.ts'

const MOODS = Number(process.env.BENCH_MOODS ?? 100)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 30)
const WARMUP = 10
const PROBE_EVERY = 5
const PREFIX = `${MOOD_NSID}/`

type Mode = 'firehose' | 'jetstream'

/** A source mode, as deployed or with the store change this benchmark proposes (see the doc). */
interface Variant {
  key: string
  mode: Mode
  insertFirst: boolean
  label: string
}

const VARIANTS: Variant[] = [
  { key: 'firehose', mode: 'firehose', insertFirst: false, label: 'firehose (PDS direct, verified)' },
  { key: 'jetstream', mode: 'jetstream', insertFirst: false, label: 'jetstream (bridge from PDS)' },
  { key: 'firehose+insert-first', mode: 'firehose', insertFirst: true, label: 'what-if: firehose, insert-first store' },
  { key: 'jetstream+insert-first', mode: 'jetstream', insertFirst: true, label: 'what-if: jetstream, insert-first store' },
]

interface Samples {
  /** t1 - t0 per mood. */
  total: number[]
  /** t0 -> the source yielded the event. */
  source: number[]
  /** source -> the indexer called MoodStore.apply (batching, the previous batch, user lookup). */
  queue: number[]
  /** MoodStore.apply called -> resolved (its MongoDB reads and write). */
  store: number[]
  /** t2 - t0 per mood. */
  read: number[]
  /** Bare insertOne round trips probed during the round. */
  writeRtt: number[]
  /** Bare key lookups (the query MoodStore.apply makes first) probed during the round. */
  readRtt: number[]
  /** A lookup then an insert, back to back: what apply does for a new mood, without the indexer. */
  pairRtt: number[]
  /** PDS sequencing delay: frame receipt minus the frame's `time` (wall clock, informative). */
  pdsDelay: number[]
  /** 1 per mood whose wait between source and apply overlapped a cursor save, else 0. */
  behindCursorSave: number[]
}

const emptySamples = (): Samples => ({ total: [], source: [], queue: [], store: [], read: [], writeRtt: [], readRtt: [], pairRtt: [], pdsDelay: [], behindCursorSave: [] })

async function main(): Promise<void> {
  const machine = await machineNote()
  progress(`machine: ${machine}`)
  const external = process.env.MONGODB_URI
  const ferret = external ? undefined : await FerretDbServer.start()
  const uri = external ?? ferret!.uri
  const client = await new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 }).connect()
  const reader = await new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 }).connect()
  const network = await TestNetwork.start()
  const listener = new PdsListener(network.firehoseUrl)
  const dbs: string[] = []
  const results = new Map<string, Samples>(VARIANTS.map((v) => [v.key, emptySamples()]))
  try {
    const account = await network.createAccount('latency')
    await listener.ready()
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round: the machine's noise drifts, and no variant always goes first.
      const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!)
      for (const variant of order) {
        const name = `bench_latency_${variant.mode}_${round}_${randomBytes(3).toString('hex')}`
        dbs.push(name)
        const db: TestDb = { uri, client, db: client.db(name), name }
        const samples = await runRound(variant, db, reader, network, account, listener)
        const into = results.get(variant.key)!
        for (const key of Object.keys(into) as (keyof Samples)[]) into[key].push(...samples[key])
        progress(`round ${round + 1} ${variant.key}: p50 ${fmt(median(samples.total))} ms, p99 ${fmt(percentile(samples.total, 0.99))} ms (n=${samples.total.length}); bare lookup+insert p50 ${fmt(median(samples.pairRtt))} ms`)
      }
    }
    report(machine, results, external ? 'MongoDB at MONGODB_URI' : 'FerretDB (test/rig, SQLite backend)')
  } finally {
    listener.close()
    for (const name of dbs) await client.db(name).dropDatabase().catch(() => {})
    await reader.close()
    await client.close()
    await network.stop()
    await ferret?.stop()
  }
}

async function runRound(variant: Variant, db: TestDb, reader: MongoClient, network: TestNetwork, account: TestAccount, listener: PdsListener): Promise<Samples> {
  const { mode } = variant
  const jetstream = mode === 'jetstream' ? await JetstreamServer.start({ firehoseUrl: network.firehoseUrl, plcUrl: network.plcUrl }) : undefined
  const env = mode === 'firehose' ? { MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: network.firehoseUrl, PLC_URL: network.plcUrl } : { MOODSYNC_SOURCE: 'jetstream', JETSTREAM_URL: jetstream!.url }
  const config = parseConfig({ MONGODB_URI: db.uri, MONGODB_DB: db.name, ...env })
  // The service's own source, built as the service would build it, with a tap on what it yields.
  const sourced = new Map<string, number>()
  const source = tap(createSource(config, silentLogger), sourced)
  const service = await startIngest(db, env, { source })
  const called = new Map<string, number>()
  const applied = new Map<string, number>()
  const visible = new Map<string, number>()
  wrapApply(service, variant.insertFirst, called, applied, (op) => {
    // Cross-check: an independent client asked right after the write was acknowledged.
    void reader
      .db(db.name)
      .collection(COLLECTIONS.moods)
      .findOne({ 'atproto.did': op.did, 'atproto.rkey': op.rkey }, { projection: { _id: 1 } })
      .then((doc) => {
        if (doc) visible.set(op.rkey, performance.now())
      })
  })
  // The indexer saves its cursor inline, at most once a second: note when, to see who waited.
  const saves: [number, number][] = []
  const cursors = service.store.cursors
  const save = cursors.save.bind(cursors)
  cursors.save = async (id: string, cursor: number) => {
    const started = performance.now()
    try {
      await save(id, cursor)
    } finally {
      saves.push([started, performance.now()])
    }
  }
  const scratch = db.db.collection('bench_probe')
  const probeRead = db.db.collection(COLLECTIONS.moods)
  const samples = emptySamples()
  try {
    await waitFor(() => service.source.stats.connected, { what: `the ${mode} source to connect` })
    // Warm-up: JIT, the DID's key and user lookups, the bridge's connection; not measured.
    const warm: string[] = []
    for (let i = 0; i < WARMUP; i++) warm.push(await writeMood(account, `warm-up ${i}`))
    await waitFor(() => warm.every((rkey) => applied.has(rkey)), { what: 'the warm-up moods', timeoutMs: 30_000 })

    const rkeys: string[] = []
    let next = performance.now()
    for (let i = 0; i < MOODS; i++) {
      const wait = next - performance.now()
      if (wait > 0) await sleep(wait)
      next = Math.max(next + INTERVAL_MS, performance.now())
      rkeys.push(await writeMood(account, `latency ${mode} ${i}`))
      if (i % PROBE_EVERY === 0) {
        const started = performance.now()
        await probeRead.find({ 'atproto.did': { $in: [account.did] }, 'atproto.rkey': { $in: [`probe${i}`] } }).toArray()
        const read = performance.now()
        await scratch.insertOne({ i, at: new Date() })
        const done = performance.now()
        samples.readRtt.push(read - started)
        samples.writeRtt.push(done - read)
        samples.pairRtt.push(done - started)
      }
    }
    await waitFor(() => rkeys.every((rkey) => applied.has(rkey) && visible.has(rkey)), { what: `all ${MOODS} moods in MongoDB`, timeoutMs: 60_000 })
    for (const rkey of rkeys) {
      const t0 = listener.received.get(rkey)
      const ts = sourced.get(rkey)
      const tc = called.get(rkey)
      const t1 = applied.get(rkey)
      const t2 = visible.get(rkey)
      if (t0 === undefined || ts === undefined || tc === undefined || t1 === undefined || t2 === undefined) throw new Error(`mood ${rkey}: missing a timestamp`)
      samples.total.push(t1 - t0)
      samples.source.push(ts - t0)
      samples.queue.push(tc - ts)
      samples.behindCursorSave.push(saves.some(([from, to]) => from < tc && to > ts) ? 1 : 0)
      samples.store.push(t1 - tc)
      samples.read.push(t2 - t0)
      const delay = listener.pdsDelay.get(rkey)
      if (delay !== undefined) samples.pdsDelay.push(delay)
    }
  } finally {
    await service.destroy()
    await jetstream?.stop()
  }
  return samples
}

async function writeMood(account: TestAccount, text: string): Promise<string> {
  const res = await account.agent.com.atproto.repo.createRecord({
    repo: account.did,
    collection: MOOD_NSID,
    record: { $type: MOOD_NSID, mood: text, when: new Date().toISOString() },
  })
  return res.data.uri.split('/').pop()!
}

/** Records when the source hands on each mood op (a generator in between: a few µs). */
function tap(inner: Source, seen: Map<string, number>): Source {
  return {
    id: inner.id,
    stats: inner.stats,
    async *events(signal: AbortSignal, from?: number): AsyncGenerator<IngestEvent> {
      for await (const event of inner.events(signal, from)) {
        if (event.kind === 'commit') {
          const at = performance.now()
          for (const op of event.ops) if (!seen.has(op.rkey)) seen.set(op.rkey, at)
        }
        yield event
      }
    },
  }
}

/** Wraps the running indexer's MoodStore.apply: notes when it was called for each op and when the write was acknowledged. */
function wrapApply(service: IngestService, insertFirst: boolean, called: Map<string, number>, applied: Map<string, number>, after: (op: MoodOp) => void): void {
  const moods = service.store.moods
  const original = insertFirst ? insertFirstApply(moods) : moods.apply.bind(moods)
  moods.apply = async (ops: readonly MoodOp[]) => {
    const start = performance.now()
    for (const op of ops) if (!called.has(op.rkey)) called.set(op.rkey, start)
    const result = await original(ops)
    const at = performance.now()
    for (const op of ops) {
      if (applied.has(op.rkey)) continue
      applied.set(op.rkey, at)
      after(op)
    }
    return result
  }
}

/**
 * What-if (the proposed store change, prototyped here only): a lone upsert of a record with no
 * `ref` is first tried as a plain insert. The unique (did, rkey) index makes that safe: if the
 * record is already there in any state, the insert fails with a duplicate key and the batch
 * takes the usual read-plan-write path. A new mood then costs one round trip instead of a
 * lookup and a write. Batches of more than one op take the usual path (collapse, one plan).
 */
function insertFirstApply(moods: IngestService['store']['moods']): (ops: readonly MoodOp[]) => Promise<ApplyResult> {
  const planned = moods.apply.bind(moods)
  return async (ops) => {
    const op = ops[0]
    if (ops.length !== 1 || op?.kind !== 'upsert' || op.mood.ref !== undefined) return planned(ops)
    try {
      await moods.collection.insertOne({ _id: new ObjectId(), user: op.user, mood: op.mood.mood, when: op.mood.when, atproto: { did: op.did, rkey: op.rkey, cid: op.cid, rev: op.rev } })
      return { inserted: 1, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0, confirmed: 0, pending: 0 }
    } catch (err) {
      if (!isDuplicateKey(err)) throw err
      return planned(ops)
    }
  }
}

/** Our own subscriber on the PDS: when each mood's frame arrived, and the PDS's own delay. */
class PdsListener {
  readonly received = new Map<string, number>()
  readonly pdsDelay = new Map<string, number>()
  readonly #ws: WebSocket

  constructor(url: string) {
    this.#ws = new WebSocket(url)
    this.#ws.on('message', (data: Buffer) => {
      const at = performance.now()
      const wall = Date.now()
      let header: { t?: string }
      let body: { ops?: { path?: string }[]; time?: string }
      try {
        ;[header, body] = [...decodeAll(data)] as [typeof header, typeof body]
      } catch {
        return
      }
      if (header?.t !== '#commit' || !Array.isArray(body?.ops)) return
      for (const op of body.ops) {
        if (typeof op?.path !== 'string' || !op.path.startsWith(PREFIX)) continue
        const rkey = op.path.slice(PREFIX.length)
        this.received.set(rkey, at)
        if (typeof body.time === 'string') this.pdsDelay.set(rkey, wall - Date.parse(body.time))
      }
    })
    this.#ws.on('error', (err) => progress(`PDS listener: ${err.message}`))
  }

  ready(): Promise<void> {
    if (this.#ws.readyState === WebSocket.OPEN) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.#ws.once('open', () => resolve())
      this.#ws.once('error', reject)
    })
  }

  close(): void {
    this.#ws.terminate()
  }
}

function report(machine: string, results: Map<string, Samples>, server: string): void {
  const all = (key: keyof Samples) => [...results.values()].flatMap((s) => s[key])
  const summary: string[][] = []
  const breakdown: string[][] = []
  const p = (values: number[]) => `${fmt(median(values))} / ${fmt(percentile(values, 0.99))}`
  for (const variant of VARIANTS) {
    const s = results.get(variant.key)!
    const p50 = median(s.total)
    const p99 = percentile(s.total, 0.99)
    summary.push([
      variant.label,
      String(s.total.length),
      fmt(p50),
      fmt(p99),
      fmt(max(s.total)),
      p(s.pairRtt),
      fmt(p50 / median(s.pairRtt), 2),
      fmt(p99 / percentile(s.pairRtt, 0.99), 2),
      p50 <= 10 && p99 <= 50 ? 'met' : `missed:${p50 > 10 ? ` p50 +${fmt(p50 - 10)}` : ''}${p99 > 50 ? ` p99 +${fmt(p99 - 50)}` : ''}`,
    ])
    const behind = s.behindCursorSave.reduce((a, b) => a + b, 0)
    breakdown.push([variant.label, p(s.source), p(s.queue), p(s.store), p(s.total), p(s.read), `${behind} (${fmt((100 * behind) / s.total.length)}%)`])
  }
  const out = [
    `latency: PDS emit (t0) -> document written and acknowledged (t1); ${ROUNDS} rounds x ${MOODS} moods per variant (order rotates each round), one every ~${INTERVAL_MS} ms, ${WARMUP} warm-up moods per round not counted; ${server}`,
    `machine: ${machine}`,
    '',
    table(['mode', 'n', 'p50 ms', 'p99 ms', 'max ms', 'bare lookup+insert p50 / p99 ms', 'p50 vs bare (x)', 'p99 vs bare (x)', 'target p50<=10, p99<=50'], summary),
    '',
    'where the time goes (ms, p50 / p99 of each stage on its own):',
    '',
    table(['mode', 'source', 'queue', 'store', 't1 - t0', 'reader sees', 'waited for a cursor save'], breakdown),
    '',
    'source = t0 -> the source yields the event (firehose: frame parse, signature and MST proof check; jetstream: the bridge and JSON); queue = -> the indexer calls MoodStore.apply (behind the previous batch, or the cursor save the indexer makes inline once a second); store = -> MongoDB acknowledged (t1); reader sees = t0 -> an independent findOne, issued at t1, returned the document.',
    'what-if rows: the deployed indexer with MoodStore.apply wrapped to insert a lone new record first (one round trip) and fall back to the usual lookup-then-write on a duplicate key; a prototype of the proposed change, not src/.',
    `baseline (same run, probed every ${PROBE_EVERY}th mood by a bare client): key lookup p50 ${fmt(median(all('readRtt')), 2)} ms, insertOne p50 ${fmt(median(all('writeRtt')), 2)} ms, both back to back p50 ${fmt(median(all('pairRtt')), 2)} ms, p99 ${fmt(percentile(all('pairRtt'), 0.99), 2)} ms. Excluded from t1 - t0: the PDS's own delay from sequencing to emitting, p50 ${fmt(median(all('pdsDelay')))} ms.`,
  ]
  console.log(out.join('\n'))
}

await main()
