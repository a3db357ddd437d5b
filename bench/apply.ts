/**
 * MongoDB apply throughput: MoodStore.apply(ops) at batch sizes 1, 10, 100 and 1000, against a
 * raw driver bulkWrite of the same documents, and a replay of already applied ops.
 *
 *   bash scripts/with-node.sh node bench/apply.ts [--rounds 5] [--ops 5000] [--ops100 2000] [--ops10 500] [--ops1 100]
 *
 * Uses MONGODB_URI when set, else starts the test rig's FerretDB (SQLite backend) on
 * 127.0.0.1. Every case writes into a fresh database (indexes created first, untimed) that is
 * dropped afterwards; the cases alternate within each round and the table shows medians.
 */
import { ObjectId, MongoClient, type AnyBulkWriteOperation, type Db } from 'mongodb'
import { FerretDbServer } from '../rig/ferretdb.ts'
import type { MoodDoc } from '../src/store/collections.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { ensureIndexes } from '../src/store/indexes.ts'
import { MoodStore, type ApplyResult, type UpsertOp } from '../src/store/records.ts'
import { fakeCommits, formatRate, median, formatRatio, log, machineNote, option, pairedRatio, rounds, summarise, table, verdict, type Contender, type Sample } from './lib-table.ts'

const roundCount = option('rounds', 'BENCH_ROUNDS', 5)
/**
 * Ops per case. On FerretDB every apply() reads by a full collection scan, so a case's cost grows
 * with the documents already stored: the small batch sizes get fewer ops to stay at a few seconds.
 */
const opsLarge = option('ops', 'BENCH_OPS', 5_000) // batch 1000, raw bulkWrite, replay
const opsBatch100 = option('ops100', 'BENCH_OPS100', 2_000)
const opsBatch10 = option('ops10', 'BENCH_OPS10', 500)
const opsBatch1 = option('ops1', 'BENCH_OPS1', 100)

function upsertOps(count: number): UpsertOp[] {
  return fakeCommits(count).map((c) => ({
    kind: 'upsert',
    did: c.did,
    rkey: c.rkey,
    rev: c.rev,
    cid: c.cid,
    mood: { mood: c.mood, when: new Date(c.when) },
    user: null,
  }))
}

/** What apply inserts for a new record (MoodStore #plan), as a raw insertOne model. */
function insertModel(op: UpsertOp): AnyBulkWriteOperation<MoodDoc> {
  return {
    insertOne: {
      document: {
        _id: new ObjectId(),
        user: op.user,
        mood: op.mood.mood,
        when: op.mood.when,
        atproto: { did: op.did, rkey: op.rkey, cid: op.cid, rev: op.rev },
      },
    },
  }
}

function add(total: ApplyResult, r: ApplyResult): void {
  for (const k of Object.keys(total) as (keyof ApplyResult)[]) total[k] += r[k]
}

function emptyResult(): ApplyResult {
  return { inserted: 0, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0, confirmed: 0, pending: 0 }
}

async function main(): Promise<void> {
  let ferret: FerretDbServer | undefined
  let uri = process.env.MONGODB_URI
  let backend = 'MongoDB at MONGODB_URI'
  if (!uri) {
    log('starting FerretDB (SQLite backend; the first run builds it, a few minutes)…')
    ferret = await FerretDbServer.start()
    uri = ferret.uri
    backend = 'FerretDB v1.24 (SQLite backend, test rig) on 127.0.0.1'
  }
  const client = new MongoClient(uri, { appName: 'moodsync-bench' })
  await client.connect()

  const ops = upsertOps(Math.max(opsLarge, opsBatch100, opsBatch10, opsBatch1))
  const run = `${process.pid.toString(36)}${Date.now().toString(36)}`
  let dbCounter = 0
  const freshDb = async (label: string): Promise<Db> => {
    const db = client.db(`moodsync_bench_${run}_${label}_${dbCounter++}`)
    await ensureIndexes(db)
    return db
  }
  const count = async (db: Db) => db.collection(COLLECTIONS.moods).countDocuments()

  /** apply() of the first `n` ops in batches of `size`, into a fresh database. */
  const applyCase = (size: number, n: number, keep?: (db: Db) => Promise<void>) => async (): Promise<Sample> => {
    const db = await freshDb(`b${size}`)
    const store = new MoodStore(db)
    const total = emptyResult()
    const started = performance.now()
    for (let i = 0; i < n; i += size) add(total, await store.apply(ops.slice(i, Math.min(n, i + size))))
    const ms = performance.now() - started
    if (total.inserted !== n) throw new Error(`batch ${size}: expected ${n} inserts, got ${JSON.stringify(total)}`)
    const stored = await count(db)
    if (stored !== n) throw new Error(`batch ${size}: ${stored} documents stored, expected ${n}`)
    if (keep) await keep(db)
    else await db.dropDatabase()
    return { events: n, ms }
  }

  /** Raw driver: bulkWrite of insertOne models of the same documents, 1000 per call, ordered. */
  const rawCase = (n: number) => async (): Promise<Sample> => {
    const db = await freshDb('raw')
    const collection = db.collection<MoodDoc>(COLLECTIONS.moods)
    const started = performance.now()
    for (let i = 0; i < n; i += 1000) {
      const res = await collection.bulkWrite(ops.slice(i, Math.min(n, i + 1000)).map(insertModel), { ordered: true })
      if (res.insertedCount !== Math.min(1000, n - i)) throw new Error(`raw: ${res.insertedCount} inserted`)
    }
    const ms = performance.now() - started
    await db.dropDatabase()
    return { events: n, ms }
  }

  // The replay runs on the database the latest batch-1000 case left behind (same ops, all applied).
  let replayDb: Db | undefined
  const keepForReplay = async (db: Db) => {
    const old = replayDb
    replayDb = db
    if (old) await old.dropDatabase()
  }
  const replayCase = (n: number) => async (): Promise<Sample> => {
    if (!replayDb) throw new Error('no database to replay into yet')
    const store = new MoodStore(replayDb)
    const total = emptyResult()
    const started = performance.now()
    for (let i = 0; i < n; i += 1000) add(total, await store.apply(ops.slice(i, Math.min(n, i + 1000))))
    const ms = performance.now() - started
    if (total.unchanged !== n) throw new Error(`replay: expected ${n} unchanged, got ${JSON.stringify(total)}`)
    return { events: n, ms }
  }

  const NAMES = {
    b1: 'apply, batch 1',
    b10: 'apply, batch 10',
    b100: 'apply, batch 100',
    b1000: 'apply, batch 1000',
    raw: 'raw bulkWrite insertOne, 1000, ordered',
    replay: 'replay (all unchanged), batch 1000',
  } as const
  const sizes: Record<keyof typeof NAMES, number> = { b1: opsBatch1, b10: opsBatch10, b100: opsBatch100, b1000: opsLarge, raw: opsLarge, replay: opsLarge }
  const warmN = (n: number) => Math.max(1, Math.min(n, 100))
  const contenders: Contender[] = [
    { name: NAMES.b1, run: applyCase(1, opsBatch1), warm: applyCase(1, warmN(opsBatch1)) },
    { name: NAMES.b10, run: applyCase(10, opsBatch10), warm: applyCase(10, warmN(opsBatch10)) },
    { name: NAMES.b100, run: applyCase(100, opsBatch100), warm: applyCase(100, warmN(opsBatch100)) },
    { name: NAMES.b1000, run: applyCase(1000, opsLarge, keepForReplay), warm: applyCase(1000, opsLarge, keepForReplay) },
    { name: NAMES.raw, run: rawCase(opsLarge), warm: rawCase(warmN(opsLarge)) },
    { name: NAMES.replay, run: replayCase(opsLarge), warm: replayCase(opsLarge) },
  ]

  const started = performance.now()
  const results = await rounds(contenders, {
    rounds: roundCount,
    warmup: true,
    onSample: (name, round, s) => log(`  round ${round + 1}: ${name.padEnd(40)} ${formatRate((s.events / s.ms) * 1000).padStart(9)} events/s (${s.events} in ${(s.ms / 1000).toFixed(2)} s)`),
  })

  // What one apply() call costs by itself, on an empty collection and on the replay database
  // (opsLarge documents): a one-op replay is just the read, so this shows how reads scale.
  const probe = async (db: Db, op: UpsertOp, repeat = 5) => {
    const store = new MoodStore(db)
    const times: number[] = []
    for (let i = 0; i < repeat; i++) {
      const t = performance.now()
      await store.apply([op])
      times.push(performance.now() - t)
    }
    return median(times)
  }
  const emptyDb = await freshDb('probe')
  const probeEmpty = await probe(emptyDb, ops[0]!)
  await emptyDb.dropDatabase()
  const probeFull = replayDb ? await probe(replayDb, ops[0]!) : Number.NaN
  if (replayDb) await replayDb.dropDatabase()
  await client.close()
  await ferret?.stop()

  const summary = summarise(results)
  const b1 = summary.get(NAMES.b1)!.median
  const rows = (Object.keys(NAMES) as (keyof typeof NAMES)[]).map((k) => {
    const s = summary.get(NAMES[k])!
    return [NAMES[k], sizes[k].toLocaleString('en-US'), formatRate(s.median), `${formatRate(s.min)}–${formatRate(s.max)}`, formatRatio(s.median / b1), formatRatio(pairedRatio(results, NAMES[k], NAMES.raw))]
  })
  const vsRaw = pairedRatio(results, NAMES.b1000, NAMES.raw)
  const vsB1 = pairedRatio(results, NAMES.b1000, NAMES.b1)
  const replayVsApply = pairedRatio(results, NAMES.replay, NAMES.b1000)
  const out = [
    `MongoDB apply: ${roundCount} rounds (order rotated), median events/s; each case into a fresh database with moodsync's indexes`,
    `backend: ${backend}`,
    `machine: ${machineNote()}`,
    '',
    table(['case', 'ops', 'events/s (median)', 'min–max', 'vs batch 1', 'vs raw (paired)'], rows),
    '',
    table(
      ['ratio (median of per-round ratios)', 'value', 'target'],
      [
        ['apply batch 1000 / raw bulkWrite', formatRatio(vsRaw), verdict(vsRaw, 0.8)],
        ['apply batch 1000 / apply batch 1', formatRatio(vsB1), verdict(vsB1, 10)],
        ['replay batch 1000 / apply batch 1000', formatRatio(replayVsApply), '—'],
      ],
    ),
    '',
    table(
      ['one apply() of one op (median of 5)', 'ms'],
      [
        ['empty collection (then 1 document)', probeEmpty.toFixed(1)],
        [`${opsLarge.toLocaleString('en-US')} documents stored`, probeFull.toFixed(1)],
      ],
    ),
    '',
    `total ${((performance.now() - started) / 1000).toFixed(0)} s`,
  ]
  process.stdout.write(`${out.join('\n')}\n`)
}

await main()
