/**
 * The writer: a migrate-style bulk write (2,100 moods over 10 users, the platform's scale)
 * through the outbox (Writer.enqueue, then flush: applyWrites), against the seed's way (one
 * createRecord per mood, with one login per user); then the latency one Writer.post adds over
 * a bare putRecord.
 *
 *   node bench/writer.ts [--moods 2100] [--users 10] [--samples 100] [--tiny]
 *
 * A local PDS (TestNetwork) behind rig/pds-proxy.ts, which counts the requests it gets;
 * MongoDB: MONGODB_URI, else the rig's mongo-java-server (FerretDB with MOODSYNC_TEST_MONGO=ferretdb).
 */
import { MongoClient, type Db } from 'mongodb'
import { COLLECTIONS } from '../src/store/collections.ts'
import { ensureIndexes } from '../src/store/indexes.ts'
import { MOOD_NSID, toRecord } from '../src/sync/mood.ts'
import { Writer } from '../src/writer/writer.ts'
import { TestNetwork, type TestAccount } from '../rig/network.ts'
import { PdsProxy } from '../rig/pds-proxy.ts'
import { fmt, int, knobs, median, percentile, ratio, script, timed, type Result, type RunOptions } from './lib/report.ts'
import { startMongo } from './lib/servers.ts'
import { postLatency } from './lib/writer-post.ts'

const SIZES = { tiny: { moods: 20, users: 2, samples: 5 }, full: { moods: 2_100, users: 10, samples: 100 } }

export const LABELS = { seed: 'seed: createRecord per mood', ours: 'ours: enqueue + flush (applyWrites)' } as const

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const { moods: n, users, samples } = knobs(opts, SIZES)
  const mongo = await startMongo(opts.mongoUri)
  const client = await new MongoClient(mongo.uri).connect()
  const network = await TestNetwork.start()
  const proxy = await PdsProxy.start(network.pdsUrl)
  const requests = () => [...proxy.calls.values()].reduce((a, b) => a + b, 0)
  const dbs: Db[] = []
  const database = async (label: string, accounts: TestAccount[]) => {
    const db = client.db(`bench_writer_${process.pid}_${label}`)
    dbs.push(db)
    await ensureIndexes(db)
    await db.collection(COLLECTIONS.users).insertMany(accounts.map((u, i) => ({ _id: `auth0|${label}${i}` as never, atproto: { did: u.did, password: u.password } })))
    return db
  }
  const text = (i: number) => `mood ${i}: ${'a quiet afternoon, '.repeat(1 + (i % 5))}`
  try {
    const seedUsers = await accounts(network, 'seed', users)
    const seed = await timed(async () => {
      for (let i = 0; i < n; i++) {
        const who = seedUsers[i % users]!
        await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: toRecord({ mood: text(i), when: new Date(), ref: `bench-seed-${i}` }) })
      }
    })

    const ourUsers = await accounts(network, 'ours', users)
    const writer = new Writer(await database('ours', ourUsers), { pdsUrl: proxy.url })
    const before = requests()
    const ours = await timed(async () => {
      for (let i = 0; i < n; i++) await writer.enqueue({ user: `auth0|ours${i % users}`, text: text(i) })
      return writer.flush({ limit: n })
    })
    const ourRequests = requests() - before
    const again = await writer.flush({ limit: n })
    const againRequests = requests() - before - ourRequests
    const seedRecords = await countRecords(seedUsers)
    const ourRecords = await countRecords(ourUsers)

    // One post: writer.post (a users lookup, an insert, putRecord, an update) against a bare
    // putRecord, alternating, on a database of its own (FerretDB scans for every update).
    const single = await postLatency({ mongoUri: mongo.uri, dbName: `bench_writer_${process.pid}_solo`, pdsUrl: network.pdsUrl, account: ourUsers[0]!, samples })
    const [bare, post] = [single.bare, single.post]

    // An applyWrites call writes to one repo: the least is ceil(moods/200) calls per user, plus one login each.
    const perUser = Array.from({ length: users }, (_, u) => Math.floor(n / users) + (u < n % users ? 1 : 0))
    const least = perUser.reduce((sum, k) => sum + Math.ceil(k / 200), 0) + users
    const row = (label: string, reqs: number, ms: number, records: number) => [label, int(reqs), fmt(ms / 1000), int(n / (ms / 1000)), int(records), int(records - n)]
    return {
      title: `writer: ${n} moods over ${users} users (local PDS; ${mongo.label})`,
      tables: [
        { headers: ['path', 'PDS requests', 'wall s', 'moods/s', 'records on the PDS', 'duplicates'], rows: [row(LABELS.seed, n, seed.ms, seedRecords), row(LABELS.ours, ourRequests, ours.ms, ourRecords)] },
        {
          headers: [`single post, ${samples} samples`, 'p50 ms', 'p99 ms'],
          rows: [['bare putRecord', fmt(median(bare)), fmt(percentile(bare, 0.99))], ['writer.post', fmt(median(post)), fmt(percentile(post, 0.99))]],
        },
      ],
      notes: [
        `wall time seed/ours = ${ratio(seed.ms / ours.ms)} (target >= 10x); PDS requests ${ourRequests}, the least possible ${least} (the issue's ceil(n/200)+users = ${Math.ceil(n / 200) + users})`,
        `a second flush sent ${againRequests} requests; post adds p50 ${fmt(median(post) - median(bare))} ms over a bare putRecord (target <= 5 ms: ${median(post) - median(bare) <= 5 ? 'met' : 'missed'}); a post sent ${single.commandsPerPost} MongoDB commands and waited ${fmt(single.mongoMsPerPost)} ms for their answers (medians)`,
      ],
      metrics: { 'seed moods/s': n / (seed.ms / 1000), 'ours moods/s': n / (ours.ms / 1000), 'seed / ours wall time': seed.ms / ours.ms, 'bare putRecord p50 ms': median(bare), 'post p50 ms': median(post) },
      counts: {
        'seed: records on the PDS': [seedRecords, n],
        'ours: records on the PDS': [ourRecords, n],
        'ours: flush written': [ours.value.written, n],
        'ours: flush failed': [ours.value.failed, 0],
        'ours: PDS requests, the least possible': [ourRequests, least],
        'second flush: written': [again.written, 0],
        'second flush: PDS requests': [againRequests, 0],
      },
    }
  } finally {
    for (const db of dbs) await db.dropDatabase().catch(() => {})
    await proxy.stop()
    await network.stop()
    await client.close()
    await mongo.stop()
  }
}

async function accounts(network: TestNetwork, prefix: string, count: number): Promise<TestAccount[]> {
  const list: TestAccount[] = []
  for (let i = 0; i < count; i++) list.push(await network.createAccount(`${prefix}${i}`))
  return list
}

async function countRecords(accounts: TestAccount[]): Promise<number> {
  let total = 0
  for (const who of accounts) {
    let cursor: string | undefined
    do {
      const page = await who.agent.com.atproto.repo.listRecords({ repo: who.did, collection: MOOD_NSID, limit: 100, cursor })
      total += page.data.records.length
      cursor = page.data.records.length ? page.data.cursor : undefined
    } while (cursor)
  }
  return total
}

await script(import.meta, run)
