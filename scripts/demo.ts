// `npm start`: the whole indexer on a fresh machine, no accounts or servers needed. Starts the
// test rig's real PDS + PLC, a MongoDB-wire server (mongo-java-server; or MONGODB_URI) and the
// real server the chosen source reads, runs the indexer against them, posts moods with
// @atproto/api and with goat (indigo's CLI) for two accounts, and shows each one arriving in
// MongoDB. Ctrl-C stops everything cleanly.
//   --source pds        (default) firehose mode on the PDS's own subscribeRepos: nothing to build
//   --source firehose   firehose mode through Bluesky's relay, as production reads the network
//   --source jetstream  classic Jetstream on the PDS
//   --source tap        Tap on the relay
// Only what the chosen path needs is built (once, cached in .cache/); goat builds while the
// first moods already flow.
import { parseArgs } from 'node:util'
import { MongoClient } from 'mongodb'
import { parseConfig } from '../src/config.ts'
import { App } from '../src/app/app.ts'
import { createLogger } from '../src/logger.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc } from '../src/store/collections.ts'
import { MoodsyncError } from '../src/errors.ts'
import { MissingToolError } from '../rig/build-cache.ts'
import { GoatClient } from '../rig/goat.ts'
import { JetstreamDaemon } from '../rig/jetstream.ts'
import { startMongoServer } from '../rig/mongo-server.ts'
import { clientRef, TestNetwork, type TestAccount } from '../rig/network.ts'
import { RelayServer } from '../rig/relay.ts'
import { TapDaemon } from '../rig/tap.ts'
import { goTool, goTools } from '../rig/tools.ts'
import { waitFor } from '../rig/wait.ts'

const { values } = parseArgs({
  options: {
    source: { type: 'string', default: 'pds' },
    once: { type: 'boolean', default: false },
    port: { type: 'string', default: '9470' },
  },
})
const source = values.source
if (source !== 'pds' && source !== 'firehose' && source !== 'jetstream' && source !== 'tap') {
  process.stderr.write(`npm start: --source must be pds, firehose, jetstream or tap (got ${JSON.stringify(source)})\n`)
  process.exit(2)
}
const READS = { pds: "the PDS's own firehose", firehose: "Bluesky's relay", jetstream: 'classic Jetstream', tap: 'the relay and Tap' } as const
const began = Date.now()
const say = (line: string) => process.stdout.write(`${line}\n`)
const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
process.once('SIGTERM', () => stop.abort())

// What a newcomer can act on (a missing JDK or Go, a port in use) is one line, not a stack.
process.setUncaughtExceptionCaptureCallback((err) => {
  const known = err instanceof MoodsyncError || err instanceof MissingToolError
  process.stderr.write(known ? `npm start: ${(err as Error).message}\n` : `npm start failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})

const teardown: (() => Promise<unknown>)[] = []
try {
  say(`moodsync demo (--source ${source}): starting a local PDS + PLC, a MongoDB-wire server and ${READS[source]} on 127.0.0.1 …`)
  // What this path needs first, built side by side (Maven mostly downloads, Go mostly compiles).
  const needed = source === 'jetstream' ? (['jetstream-v1'] as const) : source === 'tap' ? (['relay', 'tap'] as const) : source === 'firehose' ? (['relay'] as const) : []
  const [mongoServer] = await Promise.all([process.env.MONGODB_URI ? undefined : startMongoServer(undefined, (l) => say(`  ${l}`)), goTools(needed, (l) => say(`  ${l}`))])
  if (mongoServer) teardown.push(() => mongoServer.stop())
  const mongoUri = process.env.MONGODB_URI ?? mongoServer!.uri
  // goat is not on the indexer's path: it builds while the first moods flow.
  const goatBinary = goTool('goat', (l) => say(`  ${l}`))
  goatBinary.catch(() => {})

  const network = await TestNetwork.start()
  teardown.push(() => network.stop())
  const dbName = `moodsync_demo_${process.pid}`
  const mongo = await new MongoClient(mongoUri).connect()
  teardown.push(async () => {
    await mongo.db(dbName).dropDatabase()
    await mongo.close()
  })
  const db = mongo.db(dbName)

  const env: Record<string, string> = { MOODSYNC_SOURCE: source === 'pds' ? 'firehose' : source }
  let tap: TapDaemon | undefined
  if (source === 'pds') {
    env.FIREHOSE_URL = network.firehoseUrl
  } else if (source === 'jetstream') {
    const jetstream = await JetstreamDaemon.v1({ firehoseUrl: network.firehoseUrl })
    teardown.push(() => jetstream.stop())
    Object.assign(env, { JETSTREAM_URL: jetstream.url })
  } else {
    const relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    teardown.push(() => relay.stop())
    Object.assign(env, { FIREHOSE_URL: relay.firehoseUrl })
    if (source === 'tap') {
      const started = await TapDaemon.start({ relayUrl: relay.url, plcUrl: network.plcUrl })
      tap = started
      teardown.push(() => started.stop())
      Object.assign(env, { TAP_URL: started.url, TAP_ADMIN_PASSWORD: started.adminPassword })
    }
  }

  const alice = await network.createAccount('alice')
  const bob = await network.createAccount('bob')
  // alice is a platform user (users.atproto.did); bob only has an ATProto account.
  await db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|alice' as never, atproto: { did: alice.did } })
  say(`  PDS ${network.pdsUrl}   accounts: alice.test (${alice.did}, platform user auth0|alice), bob.test (${bob.did})`)
  // moodsync asks Tap to track the platform's users; an operator's Tap may track more (bob).
  await tap?.addRepos([bob.did])

  const config = parseConfig({
    MONGODB_URI: mongoUri,
    MONGODB_DB: dbName,
    PLC_URL: network.plcUrl,
    PDS_URL: network.pdsUrl,
    MOODSYNC_HTTP_PORT: values.once ? '0' : values.port,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    ...env,
  })
  const service = new App(config, { log: createLogger({ level: config.logLevel, destination: process.stderr }) }).ingestService()
  await service.start()
  teardown.push(() => service.destroy())
  await waitFor(() => service.source.stats.connected, { what: 'the indexer to connect', timeoutMs: 30_000 })
  say(`  indexer: ${service.source.id}\n  health ${service.ops.url}/healthz   metrics ${service.ops.url}/metrics\n`)

  const moods = db.collection<MoodDoc>(COLLECTIONS.moods)
  let first = true
  const show = async (who: TestAccount, rkey: string, expect: (doc: MoodDoc | null) => boolean, what: string) => {
    const started = Date.now()
    const doc = await waitFor(async () => {
      const d = await moods.findOne({ 'atproto.did': who.did, 'atproto.rkey': rkey })
      return expect(d) ? (d ?? true) : undefined
    }, { timeoutMs: 30_000, what })
    const shown = doc === true ? '(gone)' : JSON.stringify({ user: doc.user, mood: doc.mood, deleted: doc.deleted, rkey })
    say(`    -> MongoDB after ${Date.now() - started} ms: ${shown}`)
    if (first) say(`    (the first mood is in MongoDB ${((Date.now() - began) / 1000).toFixed(1)} s after the demo started)`)
    first = false
  }
  const post = async (who: TestAccount, text: string) => {
    say(`  ${who.handle} posts ${JSON.stringify(text)} with @atproto/api (createRecord)`)
    const res = await who.agent.com.atproto.repo.createRecord({ repo: who.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: text, when: new Date().toISOString() } })
    const rkey = res.data.uri.split('/').pop()!
    await show(who, rkey, (d) => d?.atproto?.cid === res.data.cid, `${who.handle}'s mood in MongoDB`)
    return rkey
  }

  await post(alice, 'morning light on the canal ☀️')
  await post(bob, 'posted from another ATProto app 🌊')

  await goatBinary
  const goat = await GoatClient.login({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl, did: alice.did, password: alice.password })
  teardown.push(() => goat.close())
  say(`  ${alice.handle} posts "coffee, then code" with goat (goat record create)`)
  const made = await goat.create({ $type: MOOD_NSID, ref: clientRef(), mood: 'coffee, then code', when: new Date().toISOString() })
  await show(alice, made.rkey, (d) => d?.atproto?.cid === made.cid, 'the goat mood')
  say(`  ${alice.handle} edits it with goat (goat record update)`)
  await goat.update(made.rkey, { $type: MOOD_NSID, ref: clientRef(), mood: 'coffee, then more code', when: new Date().toISOString() })
  await show(alice, made.rkey, (d) => d?.mood === 'coffee, then more code', 'the edit')
  say(`  ${alice.handle} deletes it with goat (goat record delete)`)
  await goat.delete(MOOD_NSID, made.rkey)
  await show(alice, made.rkey, (d) => d?.deleted === true, 'the delete')
  const counts = { live: await moods.countDocuments({ deleted: { $ne: true } }), deleted: await moods.countDocuments({ deleted: true }) }
  say(`\n  MongoDB ${dbName}.moods: ${counts.live} live, ${counts.deleted} deleted`)

  if (!values.once) {
    say(`\n  the indexer keeps following (${service.source.id}); press Ctrl-C to stop`)
    await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }))
  }
  say('  stopping: flushing the cursor, closing the indexer, the servers and the database')
} finally {
  for (const close of teardown.reverse()) await close().catch((err) => process.stderr.write(`teardown: ${(err as Error).message}\n`))
}
say('  stopped cleanly')
