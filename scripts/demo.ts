// `npm start`: the whole indexer on a fresh machine, no accounts or servers needed. Starts the
// test rig's real PDS + PLC and MongoDB-wire server (mongo-java-server; or MONGODB_URI), runs
// `moodsync ingest` against them, posts moods from a plain ATProto client for two accounts,
// and shows each one arriving in MongoDB. Ctrl-C stops everything cleanly.
import { parseArgs } from 'node:util'
import { MongoClient } from 'mongodb'
import { parseConfig } from '../src/config.ts'
import { App } from '../src/app/app.ts'
import { createLogger } from '../src/logger.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc } from '../src/store/collections.ts'
import { startMongoServer } from '../rig/mongo-server.ts'
import { JetstreamServer } from '../rig/jetstream-server.ts'
import { TestNetwork, type TestAccount } from '../rig/network.ts'
import { waitFor } from '../rig/wait.ts'

const { values } = parseArgs({
  options: {
    source: { type: 'string', default: 'firehose' },
    once: { type: 'boolean', default: false },
    port: { type: 'string', default: '9470' },
  },
})
const say = (line: string) => process.stdout.write(`${line}\n`)
const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
process.once('SIGTERM', () => stop.abort())

const teardown: (() => Promise<unknown>)[] = []
try {
  say('moodsync demo: starting a local PDS + PLC and a MongoDB-wire server on 127.0.0.1 …')
  let mongoUri = process.env.MONGODB_URI
  if (!mongoUri) {
    const server = await startMongoServer(undefined, say)
    teardown.push(() => server.stop())
    mongoUri = server.uri
  }
  const network = await TestNetwork.start()
  teardown.push(() => network.stop())
  const dbName = `moodsync_demo_${process.pid}`
  const mongo = await new MongoClient(mongoUri).connect()
  teardown.push(async () => {
    await mongo.db(dbName).dropDatabase()
    await mongo.close()
  })
  const db = mongo.db(dbName)

  const alice = await network.createAccount('alice')
  const bob = await network.createAccount('bob')
  // alice is a platform user (users.atproto.did); bob only has an ATProto account.
  await db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
  say(`  PDS ${network.pdsUrl}   accounts: alice.test (${alice.did}, platform user auth0|alice), bob.test (${bob.did})`)

  let jetstreamUrl = 'ws://127.0.0.1:1/subscribe'
  if (values.source === 'jetstream') {
    const jetstream = await JetstreamServer.start({ firehoseUrl: network.firehoseUrl, plcUrl: network.plcUrl })
    teardown.push(() => jetstream.stop())
    jetstreamUrl = jetstream.url
  }
  const config = parseConfig({
    MONGODB_URI: mongoUri,
    MONGODB_DB: dbName,
    MOODSYNC_SOURCE: values.source,
    FIREHOSE_URL: network.firehoseUrl,
    JETSTREAM_URL: jetstreamUrl,
    PLC_URL: network.plcUrl,
    PDS_URL: network.pdsUrl,
    MOODSYNC_HTTP_PORT: values.once ? '0' : values.port,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  })
  const service = new App(config, { log: createLogger({ level: config.logLevel, destination: process.stderr }) }).ingestService()
  await service.start()
  teardown.push(() => service.destroy())
  await waitFor(() => service.source.stats.connected, { what: 'the indexer to connect' })
  say(`  indexer: ${service.source.id}\n  health ${service.ops.url}/healthz   metrics ${service.ops.url}/metrics\n`)

  const moods = db.collection<MoodDoc>(COLLECTIONS.moods)
  const show = async (who: TestAccount, rkey: string, expect: (doc: MoodDoc | null) => boolean, what: string) => {
    const started = Date.now()
    const doc = await waitFor(async () => {
      const d = await moods.findOne({ 'atproto.did': who.did, 'atproto.rkey': rkey })
      return expect(d) ? (d ?? true) : undefined
    }, { timeoutMs: 30_000, what })
    const shown = doc === true ? '(gone)' : JSON.stringify({ user: doc.user, mood: doc.mood, deleted: doc.deleted, rkey })
    say(`    -> MongoDB after ${Date.now() - started} ms: ${shown}`)
  }
  const post = async (who: TestAccount, text: string) => {
    say(`  ${who.handle} posts ${JSON.stringify(text)} with @atproto/api (createRecord)`)
    const res = await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood: text, when: new Date().toISOString() } })
    const rkey = res.data.uri.split('/').pop()!
    await show(who, rkey, (d) => d?.atproto?.cid === res.data.cid, `${who.handle}'s mood in MongoDB`)
    return rkey
  }

  await post(alice, 'morning light on the canal ☀️')
  const second = await post(alice, 'coffee, then code')
  await post(bob, 'posted from another ATProto app 🌊')
  say(`  ${alice.handle} edits a mood (putRecord)`)
  await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey: second, record: { $type: MOOD_NSID, mood: 'coffee, then more code', when: new Date().toISOString() } })
  await show(alice, second, (d) => d?.mood === 'coffee, then more code', 'the edit')
  say(`  ${alice.handle} deletes it (deleteRecord)`)
  await alice.agent.com.atproto.repo.deleteRecord({ repo: alice.did, collection: MOOD_NSID, rkey: second })
  await show(alice, second, (d) => d?.deleted === true, 'the delete')
  const counts = { live: await moods.countDocuments({ deleted: { $ne: true } }), deleted: await moods.countDocuments({ deleted: true }) }
  say(`\n  MongoDB ${dbName}.moods: ${counts.live} live, ${counts.deleted} deleted`)

  if (!values.once) {
    say('\n  the indexer keeps following the PDS; press Ctrl-C to stop')
    await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }))
  }
  say('  stopping: flushing the cursor, closing the indexer, the PDS and the database')
} finally {
  for (const close of teardown.reverse()) await close().catch((err) => process.stderr.write(`teardown: ${(err as Error).message}\n`))
}
say('  stopped cleanly')
