// Writer benchmark: a migrate-style bulk write of 2,100 moods over 10 users (the platform's
// scale) through the outbox (enqueue + flush: applyWrites), against the seed's way (one
// createRecord per mood); then the latency a single post adds over a bare putRecord.
// Usage: bash scripts/with-node.sh node bench/writer.ts [moods=2100] [users=10]
import { TID } from '@atproto/common-web'
import { MongoClient } from 'mongodb'
import { createLogger } from '../src/logger.ts'
import { MOOD_NSID, toRecord } from '../src/sync/mood.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { ensureIndexes } from '../src/store/indexes.ts'
import { Writer } from '../src/writer/writer.ts'
import { FerretDbServer } from '../rig/ferretdb.ts'
import { TestNetwork, type TestAccount } from '../rig/network.ts'
import { PdsProxy } from '../rig/pds-proxy.ts'

const N = Number(process.argv[2] ?? 2100)
const USERS = Number(process.argv[3] ?? 10)
const LATENCY_SAMPLES = 100

const ferret = process.env.MONGODB_URI ? undefined : await FerretDbServer.start()
const mongo = await new MongoClient(process.env.MONGODB_URI ?? ferret!.uri).connect()
const db = mongo.db(`moodsync_bench_writer_${process.pid}`)
await ensureIndexes(db)
const network = await TestNetwork.start()
const proxy = await PdsProxy.start(network.pdsUrl)
const requests = () => [...proxy.calls.values()].reduce((a, b) => a + b, 0)

async function accounts(prefix: string): Promise<TestAccount[]> {
  const list: TestAccount[] = []
  for (let i = 0; i < USERS; i++) list.push(await network.createAccount(`${prefix}${i}`))
  return list
}
async function countRecords(who: TestAccount): Promise<number> {
  let total = 0
  let cursor: string | undefined
  do {
    const page = await who.agent.com.atproto.repo.listRecords({ repo: who.did, collection: MOOD_NSID, limit: 100, cursor })
    total += page.data.records.length
    cursor = page.data.records.length ? page.data.cursor : undefined
  } while (cursor)
  return total
}
const text = (i: number) => `mood ${i}: ${'a quiet afternoon, '.repeat(1 + (i % 5))}`

// Baseline: the seed's way, one createRecord per mood (with one login per user, which is
// kinder than the seed: it logged in for every post).
const seedUsers = await accounts('seed')
let t = performance.now()
let seedRequests = 0
for (let i = 0; i < N; i++) {
  const who = seedUsers[i % USERS]!
  await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: toRecord({ mood: text(i), when: new Date() }) })
  seedRequests++
}
const seedMs = performance.now() - t
let seedRecords = 0
for (const who of seedUsers) seedRecords += await countRecords(who)

// Ours: the moods are queued in MongoDB, then flushed through applyWrites.
const ourUsers = await accounts('ours')
await db.collection(COLLECTIONS.users).insertMany(ourUsers.map((u, i) => ({ _id: `auth0|ours${i}` as never, atproto: { did: u.did, password: u.password } })))
const writer = new Writer(db, { pdsUrl: proxy.url, log: createLogger({ level: 'silent' }) })
const before = requests()
t = performance.now()
for (let i = 0; i < N; i++) await writer.enqueue({ user: `auth0|ours${i % USERS}`, text: text(i) })
const enqueueMs = performance.now() - t
const flushed = await writer.flush({ limit: N })
const ourMs = performance.now() - t
const ourRequests = requests() - before
const again = await writer.flush({ limit: N })
const againRequests = requests() - before - ourRequests
let ourRecords = 0
for (const who of ourUsers) ourRecords += await countRecords(who)

// Latency of one post: writer.post (MongoDB insert, putRecord, MongoDB update) vs a bare
// putRecord, on a database of its own: the test server scans a collection for every update, so
// 2,100 documents would measure FerretDB, not the writer.
const soloDb = mongo.db(`moodsync_bench_writer_solo_${process.pid}`)
await ensureIndexes(soloDb)
await soloDb.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|ours0' as never, atproto: { did: ourUsers[0]!.did, password: ourUsers[0]!.password } })
const soloWriter = new Writer(soloDb, { pdsUrl: network.pdsUrl, log: createLogger({ level: 'silent' }) })
await soloWriter.post({ user: 'auth0|ours0', text: 'warm-up: one login' })
const solo = ourUsers[0]!
const bare: number[] = []
const ours: number[] = []
for (let i = 0; i < LATENCY_SAMPLES; i++) {
  let s = performance.now()
  await solo.agent.com.atproto.repo.putRecord({ repo: solo.did, collection: MOOD_NSID, rkey: TID.nextStr(), record: toRecord({ mood: `bare ${i}`, when: new Date() }) })
  bare.push(performance.now() - s)
  s = performance.now()
  await soloWriter.post({ user: 'auth0|ours0', text: `ours ${i}` })
  ours.push(performance.now() - s)
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!

// Each account's moods need their own applyWrites calls: the least possible is the sum over
// users of ceil(moods/200), plus one login each. ceil(n/200) + users assumes accounts can share.
const perUser = Array.from({ length: USERS }, (_, u) => Math.floor(N / USERS) + (u < N % USERS ? 1 : 0))
const bound = perUser.reduce((sum, n) => sum + Math.ceil(n / 200), 0) + USERS
console.log(`\nwriter: ${N} moods over ${USERS} users (local PDS, ${process.env.MONGODB_URI ? 'MONGODB_URI' : 'FerretDB'})\n`)
console.log('| path | PDS requests | wall s | moods/s | records on the PDS | duplicates |')
console.log('| --- | ---: | ---: | ---: | ---: | ---: |')
console.log(`| seed: createRecord per mood | ${seedRequests} | ${(seedMs / 1000).toFixed(1)} | ${Math.round(N / (seedMs / 1000))} | ${seedRecords} | ${seedRecords - N} |`)
console.log(`| ours: enqueue + flush (applyWrites) | ${ourRequests} | ${(ourMs / 1000).toFixed(1)} | ${Math.round(N / (ourMs / 1000))} | ${ourRecords} | ${ourRecords - N} |`)
console.log(`\nratios: wall time seed/ours = ${(seedMs / ourMs).toFixed(1)}x (target >= 10x); PDS requests ${ourRequests} vs the least possible, sum of ceil(moods/200) per user + one login per user = ${bound} (${ourRequests <= bound ? 'met' : 'missed'}; the issue's ceil(n/200)+users = ${Math.ceil(N / 200) + USERS})`)
console.log(`ours: enqueue (MongoDB only) ${(enqueueMs / 1000).toFixed(1)} s, flush wrote ${flushed.written}, failed ${flushed.failed}; a second flush sent ${againRequests} requests and wrote ${again.written}`)
console.log(`\nsingle post, ${LATENCY_SAMPLES} samples: bare putRecord p50 ${pct(bare, 50).toFixed(1)} ms, p99 ${pct(bare, 99).toFixed(1)} ms; writer.post p50 ${pct(ours, 50).toFixed(1)} ms, p99 ${pct(ours, 99).toFixed(1)} ms`)
console.log(`added latency p50 ${(pct(ours, 50) - pct(bare, 50)).toFixed(1)} ms (target <= 5 ms), ratio ${(pct(ours, 50) / pct(bare, 50)).toFixed(2)}x`)

await proxy.stop()
await network.stop()
await db.dropDatabase()
await soloDb.dropDatabase()
await mongo.close()
await ferret?.stop()
