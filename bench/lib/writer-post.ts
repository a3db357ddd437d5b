/**
 * The bench library, part 4: what one `Writer.post` adds over a bare `putRecord` to the same
 * PDS (bench/writer.ts and bench/latency.ts both report it). Alternating samples, one account,
 * on a database of its own, with the MongoDB commands each post sent counted.
 */
import { TID } from '@atproto/common-web'
import { MongoClient } from 'mongodb'
import { COLLECTIONS } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { MOOD_NSID, toRecord } from '../../src/sync/mood.ts'
import { Writer } from '../../src/writer/writer.ts'
import type { TestAccount } from '../../rig/network.ts'
import { median, timed } from './report.ts'

export interface PostLatency {
  /** Bare `putRecord` round trips (ms). */
  bare: number[]
  /** `Writer.post` (ms). */
  post: number[]
  /** MongoDB commands each post sent (median). */
  commandsPerPost: number
  /** Time a post spent waiting for MongoDB's answers, the commands' durations summed (ms, median). */
  mongoMsPerPost: number
}

/**
 * `samples` alternating pairs: a bare `putRecord` by the account's own agent, then a
 * `writer.post` for the same account, both to `pdsUrl`; the writer on database `dbName` (created
 * here with the user, dropped after).
 */
export async function postLatency(opts: { mongoUri: string; dbName: string; pdsUrl: string; account: TestAccount; samples: number }): Promise<PostLatency> {
  const client = await new MongoClient(opts.mongoUri, { monitorCommands: true }).connect()
  let commands = 0
  let waited = 0
  client.on('commandStarted', () => commands++)
  client.on('commandSucceeded', (e) => (waited += e.duration))
  client.on('commandFailed', (e) => (waited += e.duration))
  const db = client.db(opts.dbName)
  try {
    await ensureIndexes(db)
    const user = `auth0|post-latency-${opts.account.did.slice(-6)}`
    await db.collection(COLLECTIONS.users).insertOne({ _id: user as never, atproto: { did: opts.account.did, password: opts.account.password } })
    const writer = new Writer(db, { pdsUrl: opts.pdsUrl })
    await writer.post({ user, text: 'warm-up: one login' })
    const out: PostLatency = { bare: [], post: [], commandsPerPost: 0, mongoMsPerPost: 0 }
    const perPost: number[] = []
    const mongoMs: number[] = []
    for (let i = 0; i < opts.samples; i++) {
      const agent = opts.account.agent
      out.bare.push((await timed(() => agent.com.atproto.repo.putRecord({ repo: opts.account.did, collection: MOOD_NSID, rkey: TID.nextStr(), record: toRecord({ mood: `bare ${i}`, when: new Date(), ref: `bench-bare-${i}` }) }))).ms)
      const [before, waitedBefore] = [commands, waited]
      out.post.push((await timed(() => writer.post({ user, text: `ours ${i}` }))).ms)
      perPost.push(commands - before)
      mongoMs.push(waited - waitedBefore)
    }
    out.commandsPerPost = median(perPost)
    out.mongoMsPerPost = median(mongoMs)
    return out
  } finally {
    await db.dropDatabase().catch(() => {})
    await client.close()
  }
}
