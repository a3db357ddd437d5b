import { TID } from '@atproto/common-web'
import { ObjectId } from 'mongodb'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { BackfillReport } from '../../src/reconcile/backfill.ts'
import type { MigrateReport } from '../../src/reconcile/migrate.ts'
import type { RepairReport } from '../../src/reconcile/repair.ts'
import type { StatusReport } from '../../src/reconcile/status.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { cliRunner } from '../../rig/cli.ts'
import { freePort } from '../../rig/daemon.ts'
import { snapshot, useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount, listMoodRecords } from '../../rig/network.ts'
import { TcpProxy } from '../../rig/tcp-proxy.ts'

const t = useTestDb('reconcile_truth')
const SECRET = 'reconcile-truth-secret-0123456789abcdef'
/** Enough users that four run at once and interleave. */
const ACCOUNTS = 6
const CONCURRENCY = '4'
/** Per user i: records posted from another app, moods never written, one mood whose record is gone. */
const direct = (i: number) => i + 1
const unwritten = (i: number) => i + 2

describe('status and the reconcile commands tell the truth', () => {
  let network: TestNetwork
  const accounts: TestAccount[] = []
  const userOf = (i: number) => `auth0|truth${i}`
  let env: Record<string, string>
  let stop: AbortController | undefined
  const moods = () => t.db.collection<MoodDoc>(COLLECTIONS.moods)
  const { run } = cliRunner(() => env, { signal: () => stop?.signal })
  /** A --json run, parsed, with the exit code and stderr (progress) alongside. */
  const json = async <T,>(...argv: string[]) => {
    const res = await run(...argv, '--json')
    try {
      return { report: JSON.parse(res.out) as T, code: res.code, err: res.err }
    } catch {
      throw new Error(`not JSON (exit ${res.code}): ${res.out}\n${res.err}`)
    }
  }
  const post = async (who: TestAccount, texts: string[]) => {
    const rkeys = texts.map(() => TID.nextStr())
    await who.agent.com.atproto.repo.applyWrites({
      repo: who.did,
      writes: texts.map((mood, i) => ({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, rkey: rkeys[i]!, value: { $type: MOOD_NSID, mood, ref: clientRef(), when: new Date().toISOString() } })),
    })
    return rkeys
  }
  const listRecords = (who: TestAccount) => listMoodRecords(who)
  const recordsOnAtproto = async () => (await Promise.all(accounts.map(listRecords))).reduce((n, records) => n + records.length, 0)
  /**
   * Interrupts the command once `after` repos have been asked for (getRepo), the way an
   * operator's Ctrl-C lands mid-run; `then` may also break something at that moment.
   */
  const realFetch = globalThis.fetch
  const interruptAfter = (after: number, then: () => void = () => stop!.abort()) => {
    vi.restoreAllMocks()
    stop = new AbortController()
    let reads = 0
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const url = input instanceof Request ? input.url : String(input)
      if (url.includes('/xrpc/com.atproto.sync.getRepo') && ++reads === after) then()
      return realFetch(input, init)
    })
  }
  // The ids the setup made, by what they stand for, to query MongoDB with afterwards.
  const directRkeys: string[] = []
  const goneIds: ObjectId[] = []
  const unwrittenIds: ObjectId[] = []

  beforeAll(async () => {
    network = await TestNetwork.start()
    env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, PDS_URL: network.pdsUrl, PLC_URL: network.plcUrl, MOODSYNC_SECRET: SECRET, LOG_LEVEL: 'warn' }
    await ensureIndexes(t.db)
    for (let i = 0; i < ACCOUNTS; i++) {
      const account = await network.createAccount(`truth${i}`)
      accounts.push(account)
      await t.db.collection(COLLECTIONS.users).insertOne({ _id: userOf(i) as never, atproto: { did: account.did, password: account.password } })
      directRkeys.push(...(await post(account, Array.from({ length: direct(i) }, (_, k) => `from another app ${i}.${k}`))))
      const docs: MoodDoc[] = Array.from({ length: unwritten(i) }, (_, k) => ({ _id: new ObjectId(), user: userOf(i), mood: `never written ${i}.${k}`, when: new Date() }))
      unwrittenIds.push(...docs.map((d) => d._id))
      const gone: MoodDoc = { _id: new ObjectId(), user: userOf(i), mood: `record gone ${i}`, when: new Date(), atproto: { did: account.did, rkey: TID.nextStr() } }
      goneIds.push(gone._id)
      await moods().insertMany([...docs, gone])
    }
  })
  afterEach(() => {
    vi.restoreAllMocks()
    stop = undefined
  })
  afterAll(async () => {
    await network?.stop()
  })

  it('status at concurrency 4 counts exactly what MongoDB and the repos hold, and exits 1 on drift', async () => {
    const { report, code } = await json<StatusReport>('status', '--concurrency', CONCURRENCY)
    expect(code).toBe(1)
    expect(report).toMatchObject({ total: ACCOUNTS, checked: ACCOUNTS, interrupted: false, unchecked: [] })
    expect(report.counts.atprotoOnly).toBe(await recordsOnAtproto())
    expect(report.counts.unmigrated).toBe(await moods().countDocuments({ 'atproto.rkey': { $exists: false }, deleted: { $ne: true } }))
    expect(report.counts.mongoOnly).toBe(await moods().countDocuments({ _id: { $in: goneIds }, deleted: { $ne: true } }))
    expect(report.drift).toBe(report.counts.atprotoOnly + report.counts.unmigrated + report.counts.mongoOnly)
    // Each repo is named by its handle too, from the DID document just read.
    expect(report.subjects.filter((s) => s.did !== null).map((s) => [s.did, s.handle]).sort()).toEqual(accounts.map((a) => [a.did, a.handle]).sort())
  })

  it('status interrupted after some users exits 130, says how far it got, never "in sync"', async () => {
    const after = 2
    interruptAfter(after)
    // One at a time, so "after 2 repos asked for" is exactly 2 users checked (the one being read finishes).
    const { report, code } = await json<StatusReport>('status', '--concurrency', '1')
    expect(code).toBe(130)
    expect(report).toMatchObject({ interrupted: true, total: ACCOUNTS, checked: after, unchecked: [] })
    expect(report.subjects).toHaveLength(after)

    interruptAfter(after)
    const human = await run('status', '--concurrency', '1')
    expect(human.code).toBe(130)
    expect(human.out.split('\n')[0]).toBe(`INTERRUPTED after ${after} of ${ACCOUNTS} users/repos (${ACCOUNTS - after} not reached): run the same command again to finish`)
    expect(human.out).not.toMatch(/^in sync/m)
    // Interrupted before anything could be checked: still 130, 0 of all.
    stop = new AbortController()
    stop.abort()
    const none = await json<StatusReport>('status')
    expect(none).toMatchObject({ code: 130, report: { interrupted: true, checked: 0, total: ACCOUNTS } })
  })

  it('migrate at concurrency 4: its summary equals what MongoDB holds afterwards', async () => {
    expect(await moods().countDocuments({ 'atproto.state': 'confirmed' })).toBe(0)
    const recordsBefore = await recordsOnAtproto()
    const { report, code, err } = await json<MigrateReport>('migrate', '--concurrency', CONCURRENCY)
    expect(code).toBe(0)
    expect(report).toMatchObject({ total: ACCOUNTS, checked: ACCOUNTS, interrupted: false, unchecked: [] })
    const written = await moods().countDocuments({ _id: { $in: unwrittenIds }, 'atproto.rkey': { $exists: true } })
    expect(written).toBe(unwrittenIds.length)
    expect(report.queued).toBe(written)
    expect(report.flushed.written).toBe(written)
    expect(report.confirmed).toBe(await moods().countDocuments({ 'atproto.state': 'confirmed' }))
    // Progress counts every user and every record read (before writing), and ends at the total.
    expect(err).toContain(`migrate: ${ACCOUNTS}/${ACCOUNTS} users, ${recordsBefore} moods`)
  })

  it('repair at concurrency 4: its summary equals what MongoDB holds afterwards; then status says in sync', async () => {
    // Another client edits one migrated record per user: MongoDB then differs.
    for (let i = 0; i < ACCOUNTS; i++) {
      const doc = (await moods().findOne({ user: userOf(i), _id: { $in: unwrittenIds } }))!
      await accounts[i]!.agent.com.atproto.repo.putRecord({ repo: accounts[i]!.did, collection: MOOD_NSID, rkey: doc.atproto!.rkey!, record: { $type: MOOD_NSID, ref: doc._id.toHexString(), mood: `edited elsewhere ${i}`, when: doc.when.toISOString() } })
    }
    expect(await moods().countDocuments({ 'atproto.rkey': { $in: directRkeys } })).toBe(0)
    const records = await recordsOnAtproto()

    const { report, code, err } = await json<RepairReport>('repair', '--concurrency', CONCURRENCY)
    expect(code).toBe(0)
    expect(report).toMatchObject({ total: ACCOUNTS, checked: ACCOUNTS, interrupted: false, unchecked: [] })
    expect(report.done.applied.inserted).toBe(await moods().countDocuments({ 'atproto.rkey': { $in: directRkeys } }))
    expect(report.done.applied.inserted).toBe(directRkeys.length)
    expect(report.done.applied.deleted).toBe(await moods().countDocuments({ _id: { $in: goneIds }, deleted: true }))
    expect(report.done.applied.deleted).toBe(goneIds.length)
    expect(report.done.applied.updated).toBe(await moods().countDocuments({ mood: /^edited elsewhere / }))
    expect(report.done.applied.updated).toBe(ACCOUNTS)
    expect(err).toContain(`repair: ${ACCOUNTS}/${ACCOUNTS} users, ${records} moods`)

    const status = await json<StatusReport>('status', '--concurrency', CONCURRENCY)
    expect(status.code).toBe(0)
    expect(status.report.drift).toBe(0)
    expect(status.report.counts.inSync).toBe(await moods().countDocuments({ deleted: { $ne: true } }))
    expect(status.report.counts.inSync).toBe(records)
    const human = await run('status')
    expect(human.out.split('\n')[0]).toBe(`in sync: ${records} moods across ${ACCOUNTS} users/repos`)
  })

  it('users whose DIDs resolve nowhere are counted and named apart from "in sync", and make the exit code 3', async () => {
    // Well-formed did:plc identifiers the PLC has never seen.
    const lost = ['a', 'b', 'c'].map((c, i) => ({ user: `auth0|lost${i}`, did: `did:plc:${c.repeat(24)}` }))
    await t.db.collection(COLLECTIONS.users).insertMany(lost.map((l) => ({ _id: l.user as never, atproto: { did: l.did } })))
    // One of them moodsync saw a handle for (an identity event, before its DID document went away).
    await t.db.collection(COLLECTIONS.identities).insertOne({ _id: lost[0]!.did as never, handle: 'gone.test', from: 'event', updatedAt: new Date() })
    try {
      const { report, code } = await json<StatusReport>('status', '--concurrency', CONCURRENCY)
      expect(code).toBe(3)
      expect(report).toMatchObject({ total: ACCOUNTS + lost.length, checked: ACCOUNTS, interrupted: false, drift: 0, uncheckedByKind: { unresolvable: lost.length } })
      expect(report.unchecked.map((u) => ({ user: u.user, did: u.did, kind: u.kind })).sort((a, b) => a.user!.localeCompare(b.user!))).toEqual(lost.map((l) => ({ ...l, kind: 'unresolvable' })))
      const human = await run('status')
      expect(human.code).toBe(3)
      const lines = human.out.split('\n')
      expect(lines[0]).toBe(`INCOMPLETE: ${lost.length} of ${ACCOUNTS + lost.length} users/repos could not be checked (unresolvable: ${lost.length}):`)
      expect(human.out).toContain(`${lost[0]!.user} (${lost[0]!.did} @gone.test): unresolvable:`)
      for (const l of lost.slice(1)) expect(human.out).toContain(`${l.user} (${l.did}): unresolvable:`)
      expect(report.unchecked.find((u) => u.did === lost[0]!.did)?.handle).toBe('gone.test')
      expect(human.out).not.toMatch(/^in sync/m)

      // Drift among the others wins the exit code (1); the headline still says what was not checked.
      await post(accounts[0]!, ['posted while some DIDs were lost'])
      const drift = await run('status')
      expect(drift.code).toBe(1)
      expect(drift.out).toMatch(/^INCOMPLETE: 3 of \d+ users\/repos could not be checked/m)
      expect(drift.out).toMatch(/^DRIFT: 1 moods or records out of sync across 1 users\/repos \(among the \d+ checked\)/m)

      // repair fixes what it can reach, names what it could not, and exits 3.
      const repair = await json<RepairReport>('repair')
      expect(repair.code).toBe(3)
      expect(repair.report).toMatchObject({ checked: ACCOUNTS, uncheckedByKind: { unresolvable: lost.length }, done: { applied: { inserted: 1 } } })
      const backfill = await json<BackfillReport>('backfill', '--all-users')
      expect(backfill.code).toBe(3)
      expect(backfill.report.failures).toEqual({ unresolvable: lost.length })
    } finally {
      await t.db.collection(COLLECTIONS.users).deleteMany({ _id: { $in: lost.map((l) => l.user as never) } })
    }
    expect((await run('status')).code).toBe(0)
  })

  it('backfill --dry-run says what it would change and writes nothing; the real run then does exactly that', async () => {
    const added = await post(accounts[1]!, ['dry run 1', 'dry run 2'])
    const gone = { _id: new ObjectId(), user: userOf(2), mood: 'record gone for the dry run', when: new Date(), atproto: { did: accounts[2]!.did, rkey: TID.nextStr() } }
    await moods().insertOne(gone)
    // An account its host no longer serves: its moods are to be hidden.
    const away = await network.createAccount('truthaway')
    await t.db.collection(COLLECTIONS.users).insertOne({ _id: 'auth0|away' as never, atproto: { did: away.did, password: away.password } })
    const awayRkeys = await post(away, ['away 1', 'away 2', 'away 3'])
    expect((await json('backfill', '--user', 'auth0|away')).code).toBe(0)
    await away.agent.com.atproto.server.deactivateAccount({})
    try {
      const collections = [COLLECTIONS.moods, 'moodsync_repos', 'moodsync_backfill', 'moodsync_quarantine']
      const before = await snapshot(t.db, collections)
      // --force: the repos read by the backfill above have not moved; the drift is MongoDB's.
      const dry = await json<BackfillReport>('backfill', '--all-users', '--force', '--dry-run')
      expect(dry.code).toBe(0)
      expect(dry.report).toMatchObject({ dryRun: true, interrupted: false, repos: { hidden: 1, failed: 0 }, applied: { inserted: added.length, deleted: 1 }, hiddenMoods: awayRkeys.length })
      expect(await snapshot(t.db, collections)).toBe(before)
      expect(dry.err).toMatch(/backfill plan: /)
      const human = await run('backfill', '--all-users', '--force', '--dry-run')
      expect(human.out).toMatch(/^backfill plan \(dry run: nothing changed\)/m)
      expect(human.out).toContain(`would change: ${added.length} moods added, 0 updated, 0 linked to their MongoDB mood, 1 marked deleted (record gone), ${awayRkeys.length} hidden (account not active)`)
      expect(await snapshot(t.db, collections)).toBe(before)

      const real = await json<BackfillReport>('backfill', '--all-users', '--force')
      expect(real.code).toBe(0)
      expect(real.report.dryRun).toBe(false)
      expect(real.report.applied).toEqual(dry.report.applied)
      expect(real.report.hiddenMoods).toBe(dry.report.hiddenMoods)
      expect(await moods().countDocuments({ 'atproto.rkey': { $in: added } })).toBe(added.length)
      expect(await moods().countDocuments({ _id: gone._id, deleted: true })).toBe(1)
      expect(await moods().countDocuments({ 'atproto.did': away.did, 'atproto.hidden': 'deactivated' })).toBe(awayRkeys.length)
    } finally {
      await away.agent.com.atproto.server.activateAccount()
    }
    // Back: a dry run says it would bring the hidden moods back, and leaves them hidden.
    const back = await json<BackfillReport>('backfill', '--user', 'auth0|away', '--dry-run')
    expect(back).toMatchObject({ code: 0, report: { dryRun: true, restored: awayRkeys.length, applied: { inserted: 0, deleted: 0 } } })
    expect(await moods().countDocuments({ 'atproto.did': away.did, 'atproto.hidden': 'deactivated' })).toBe(awayRkeys.length)
    expect((await json<BackfillReport>('backfill', '--user', 'auth0|away')).report.restored).toBe(awayRkeys.length)
    expect(await moods().countDocuments({ 'atproto.did': away.did, deleted: { $ne: true } })).toBe(awayRkeys.length)
  })

  it('MongoDB down at start: every reconcile command exits 69 at once, never 1', async () => {
    const saved = env
    env = { ...saved, MONGODB_URI: `mongodb://127.0.0.1:${await freePort()}/?serverSelectionTimeoutMS=300` }
    try {
      for (const argv of [['status'], ['repair'], ['dedupe'], ['migrate'], ['backfill', '--all-users'], ['status', '--json']]) {
        const started = Date.now()
        const res = await run(...argv)
        expect(res.code, argv.join(' ')).toBe(69)
        expect(res.err).toMatch(/MongoDB unavailable: cannot prepare MongoDB at mongodb:\/\/127\.0\.0\.1:\d+/)
        expect(res.out).toBe('')
        // The URI's own timeout (300 ms) is the one used, not moodsync's 10 s default.
        expect(Date.now() - started, argv.join(' ')).toBeLessThan(8_000)
      }
    } finally {
      env = saved
    }
  })

  it('MongoDB lost mid-run: the users left are unchecked (store), the exit code is 69, the report says how far it got', async () => {
    const mongo = new URL(t.uri)
    const proxy = await TcpProxy.start({ host: mongo.hostname, port: Number(mongo.port || 27017) })
    const proxied = new URL(t.uri)
    proxied.host = `127.0.0.1:${proxy.port}`
    proxied.searchParams.set('directConnection', 'true')
    proxied.searchParams.set('serverSelectionTimeoutMS', '500')
    const saved = env
    env = { ...saved, MONGODB_URI: proxied.toString() }
    try {
      const total = await t.db.collection(COLLECTIONS.users).countDocuments({ 'atproto.did': { $type: 'string' } })
      const after = 2
      // MongoDB goes away while the second user's repo is being read; nobody presses Ctrl-C.
      interruptAfter(after, () => void proxy.down())
      const { report, code } = await json<StatusReport>('status', '--concurrency', '1')
      expect(code).toBe(69)
      expect(report).toMatchObject({ total, checked: after - 1, interrupted: false, uncheckedByKind: { store: total - after + 1 } })
      expect(report.subjects).toHaveLength(after - 1)
    } finally {
      env = saved
      await proxy.stop()
    }
  })
})
