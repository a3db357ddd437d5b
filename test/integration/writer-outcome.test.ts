import { Writable } from 'node:stream'
import { ObjectId, type Db } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { LoginRefusedError, WrongSecretError } from '../../src/errors.ts'
import { createLogger } from '../../src/logger.ts'
import { COLLECTIONS, type MoodDoc } from '../../src/store/collections.ts'
import { ensureIndexes } from '../../src/store/indexes.ts'
import { UnknownUserError } from '../../src/store/users.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { DecryptError, SecretBox } from '../../src/writer/secret-box.ts'
import { Writer } from '../../src/writer/writer.ts'
import { snapshot, useTestDb } from '../../rig/mongo.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'
import { PdsProxy } from '../../rig/pds-proxy.ts'

const t = useTestDb('writer_outcome')
const SECRET = 'outcome-test-secret-0123456789abcdef'
const WRONG = 'outcome-test-wrong-key-0123456789abcd'
const OLD = 'outcome-test-old-key-0123456789abcdefg'
const NEW = 'outcome-test-new-key-0123456789abcdefg'
const THIRD = 'outcome-test-third-key-0123456789abcdef'
const WRITES = ['com.atproto.repo.putRecord', 'com.atproto.repo.applyWrites', 'com.atproto.repo.createRecord']

/**
 * The writer's outcome is what happens: a post that is going to fail for certain fails before
 * anything is stored; a post that is stored answers its state (pending, with the reason) and
 * exits 0, so nobody retries it into a second mood; destructive commands have a dry run; the
 * key can be rotated while the old one is still accepted.
 */
describe('writer outcomes', () => {
  let network: TestNetwork
  let proxy: PdsProxy
  const accounts = new Map<string, TestAccount>()
  let logText = ''
  const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, done) => ((logText += c.toString()), done()) }) })
  const moods = (db: Db = t.db) => db.collection<MoodDoc>(COLLECTIONS.moods)
  const writes = () => WRITES.reduce((sum, m) => sum + proxy.count(m), 0)

  async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
    let out = ''
    let err = ''
    const stdout = new Writable({ write: (c, _e, done) => ((out += c.toString()), done()) })
    const stderr = new Writable({ write: (c, _e, done) => ((err += c.toString()), done()) })
    const code = await main(args, { stdout, stderr, env: { MONGODB_URI: t.uri, MONGODB_DB: t.name, PDS_URL: proxy.url, LOG_LEVEL: 'debug', ...env } })
    logText += out + err
    return { code, out, err }
  }

  /** A platform user with a PDS account (and, unless told otherwise, its real password). */
  async function user(name: string, db: Db = t.db, password?: string): Promise<string> {
    const account = await network.createAccount(name)
    accounts.set(name, account)
    await db.collection(COLLECTIONS.users).insertOne({ _id: `auth0|${name}` as never, atproto: { did: account.did, password: password ?? account.password } })
    return `auth0|${name}`
  }

  const rkeysOf = async (name: string) =>
    (await accounts.get(name)!.agent.com.atproto.repo.listRecords({ repo: accounts.get(name)!.did, collection: MOOD_NSID, limit: 100 })).data.records.map((r) => r.uri.split('/').pop()!)

  beforeAll(async () => {
    network = await TestNetwork.start()
    proxy = await PdsProxy.start(network.pdsUrl)
    await ensureIndexes(t.db)
  })
  afterAll(async () => {
    await proxy?.stop()
    await network?.stop()
    // Nothing any part printed or logged in this file holds a key or a password.
    expect(logText.length).toBeGreaterThan(0)
    for (const secret of [SECRET, WRONG, OLD, NEW, THIRD, ...[...accounts.values()].map((a) => a.password)]) expect(logText).not.toContain(secret)
    expect(logText).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./)
  })

  it('a post with a wrong secret fails before anything is stored, and no worker publishes it later', async () => {
    const cat = await user('cat')
    expect((await cli(['seal-credentials'], { MOODSYNC_SECRET: SECRET })).code).toBe(0)
    const before = writes()

    // The CLI: exit 1, the reason named, nothing in MongoDB.
    const res = await cli(['post', '--user', cat, 'posted with the wrong key'], { MOODSYNC_SECRET: WRONG })
    expect(res.code).toBe(1)
    expect(res.err).toMatch(/cannot be decrypted with MOODSYNC_SECRET/)
    expect(await moods().countDocuments({ user: cat })).toBe(0)

    // The library: a named error, nothing stored either.
    const wrong = new Writer(t.db, { pdsUrl: proxy.url, secret: WRONG, log })
    const failed = await wrong.post({ user: cat, text: 'from a function with the wrong key' }).catch((err: unknown) => err)
    expect(failed).toBeInstanceOf(WrongSecretError)
    expect((failed as Error).cause).toBeInstanceOf(DecryptError)
    expect(await moods().countDocuments({ user: cat })).toBe(0)

    // An edit and a delete with the wrong key change nothing either.
    const right = new Writer(t.db, { pdsUrl: proxy.url, secret: SECRET, log })
    const posted = await right.post({ user: cat, text: 'with the right key' })
    expect(posted.state).toBe('written')
    const stored = await moods().findOne({ _id: new ObjectId(posted.id) })
    await expect(wrong.edit({ user: cat, id: posted.id, text: 'edited with the wrong key' })).rejects.toBeInstanceOf(WrongSecretError)
    await expect(wrong.delete({ user: cat, id: posted.id })).rejects.toBeInstanceOf(WrongSecretError)
    expect(await moods().findOne({ _id: new ObjectId(posted.id) })).toEqual(stored)

    // The ingest's worker, with the right key, has nothing to publish: one mood went out, the good one.
    expect(await right.flush()).toMatchObject({ retried: 0 })
    expect(writes() - before).toBe(1)
    expect(await rkeysOf('cat')).toEqual([posted.rkey])

    // A worker with the wrong key keeps what it cannot send pending, says why, and sends nothing;
    // a worker with the right key then sends it.
    const queued = await right.enqueue({ user: cat, text: 'queued for a worker' })
    expect(await wrong.flush()).toMatchObject({ deferred: 1, written: 0 })
    const waiting = (await moods().findOne({ _id: new ObjectId(queued.id) }))!.atproto!
    expect(waiting).toMatchObject({ state: 'pending', error: expect.stringMatching(/cannot be decrypted with MOODSYNC_SECRET/) })
    expect(waiting.claimedBy).toBeUndefined()
    expect(writes() - before).toBe(1)
    expect(logText).toMatch(/"level":50.*cannot decrypt the credentials with this MOODSYNC_SECRET/)
    expect(await right.flush({ now: new Date(Date.now() + 3_600_000) })).toMatchObject({ written: 1 })
    expect(new Set(await rkeysOf('cat'))).toEqual(new Set([posted.rkey, queued.rkey]))
  })

  it('an unknown user is an error, and nothing is stored', async () => {
    const writer = new Writer(t.db, { pdsUrl: proxy.url, secret: SECRET, log })
    await expect(writer.post({ user: 'auth0|nobody-at-all', text: 'hello?' })).rejects.toBeInstanceOf(UnknownUserError)
    await expect(writer.enqueue({ user: 'auth0|nobody-at-all', text: 'hello?' })).rejects.toBeInstanceOf(UnknownUserError)
    const res = await cli(['post', '--user', 'auth0|nobody-at-all', 'hello?'], { MOODSYNC_SECRET: SECRET })
    // A --user the platform does not know is bad usage for every command (the exit-code table).
    expect(res.code).toBe(2)
    expect(res.err).toMatch(/no platform user "auth0\|nobody-at-all"/)
    expect(await moods().countDocuments({ user: 'auth0|nobody-at-all' })).toBe(0)
  })

  it('a login the PDS refuses (a wrong password) fails before anything is stored', async () => {
    const dan = await user('dan', t.db, 'not-the-password')
    const before = writes()
    await expect(new Writer(t.db, { pdsUrl: proxy.url, log }).post({ user: dan, text: 'wrong password' })).rejects.toBeInstanceOf(LoginRefusedError)
    const res = await cli(['post', '--user', dan, 'wrong password'], {})
    expect(res.code).toBe(1)
    expect(res.err).toMatch(/refused to log in as auth0\|dan/)
    expect(await moods().countDocuments({ user: dan })).toBe(0)
    expect(writes()).toBe(before)
  })

  it('the PDS unreachable: the post is stored pending with the reason, exit 0, and sent once when it is back', async () => {
    const eve = await user('eve')
    proxy.mode = { kind: 'down' }
    try {
      const res = await cli(['post', '--user', eve, '--json', 'while the PDS is away'], {})
      expect(res.code).toBe(0)
      const posted = JSON.parse(res.out) as { id: string; rkey: string; state: string; error: string }
      expect(posted).toMatchObject({ state: 'pending', error: expect.stringMatching(/PDS unreachable/) })
      const human = await cli(['post', '--user', eve, 'again while away'], {})
      expect(human.code).toBe(0)
      expect(human.out).toMatch(/: pending \(.*PDS unreachable.*\); stored in MongoDB, `moodsync ingest` sends it to ATProto later: do not run this again/)
      const lib = await new Writer(t.db, { pdsUrl: proxy.url, log }).post({ user: eve, text: 'from a function while away' })
      expect(lib).toMatchObject({ state: 'pending', error: expect.stringMatching(/PDS unreachable/) })
    } finally {
      proxy.mode = { kind: 'pass' }
    }
    const pending = await moods().find({ user: eve }).toArray()
    expect(pending.map((d) => d.atproto?.state)).toEqual(['pending', 'pending', 'pending'])
    const before = writes()
    expect(await new Writer(t.db, { pdsUrl: proxy.url, log }).flush()).toMatchObject({ written: pending.length, failed: 0 })
    expect(writes() - before).toBeLessThanOrEqual(pending.length) // one applyWrites may carry them all
    expect(new Set(await rkeysOf('eve'))).toEqual(new Set(pending.map((d) => d.atproto!.rkey)))
  })

  it('forget --dry-run and delete --dry-run report what they would delete and change nothing', async () => {
    const fay = await user('fay')
    const writer = new Writer(t.db, { pdsUrl: proxy.url, log })
    const posted = [await writer.post({ user: fay, text: 'one' }), await writer.post({ user: fay, text: 'two' })]
    // A record from another client, which MongoDB does not have (no indexer here): forget erases it too.
    await accounts.get('fay')!.agent.com.atproto.repo.createRecord({ repo: accounts.get('fay')!.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, ref: clientRef(), mood: 'elsewhere', when: new Date().toISOString() } })
    const everything = [COLLECTIONS.moods, COLLECTIONS.forgotten, COLLECTIONS.credentials, COLLECTIONS.sessions, COLLECTIONS.users]
    const dbBefore = await snapshot(t.db, everything)
    const repoBefore = await rkeysOf('fay')
    const writesBefore = writes()

    const del = await cli(['delete', '--user', fay, '--dry-run', '--json', posted[0]!.id], {})
    expect(del.code).toBe(0)
    expect(JSON.parse(del.out)).toEqual({ dryRun: true, id: posted[0]!.id, rkey: posted[0]!.rkey, did: accounts.get('fay')!.did, state: 'written', alreadyDeleted: false, deletesRecord: true })
    expect((await cli(['delete', '--user', fay, '--dry-run', posted[1]!.rkey!], {})).out).toMatch(/^dry run: would delete .* and its ATProto record .*; nothing changed/)

    const plan = await cli(['forget', '--user', fay, '--dry-run', '--json'], {})
    expect(plan.code).toBe(0)
    const planned = JSON.parse(plan.out) as { records: number; documents: number }
    expect(planned).toEqual({ dryRun: true, user: fay, did: accounts.get('fay')!.did, records: repoBefore.length, documents: await moods().countDocuments({ user: fay }) })
    expect((await cli(['forget', '--user', fay, '--dry-run'], {})).out).toMatch(new RegExp(`^dry run: forgetting auth0\\|fay would delete ${repoBefore.length} ATProto records`))

    expect(await snapshot(t.db, everything)).toBe(dbBefore)
    expect(await rkeysOf('fay')).toEqual(repoBefore)
    expect(writes()).toBe(writesBefore)
    expect(proxy.count('com.atproto.repo.deleteRecord')).toBe(0)

    // The dry run said what the real one then does.
    const done = await cli(['forget', '--user', fay, '--json'], {})
    expect(done.code).toBe(0)
    expect(JSON.parse(done.out)).toEqual({ recordsDeleted: planned.records, documentsDeleted: planned.documents })
    expect(await rkeysOf('fay')).toEqual([])
  })

  it('rotate-secret re-seals under the new key while the old one is still accepted; then the old key alone opens nothing and posts work with the new one', async () => {
    // A database of its own: its sealed values are all of this rotation.
    const db = t.client.db(`${t.name}_rotation`)
    await ensureIndexes(db)
    const env = { MONGODB_DB: db.databaseName }
    try {
      const gus = await user('gus', db)
      const hal = await user('hal', db)
      expect((await cli(['seal-credentials'], { ...env, MOODSYNC_SECRET: OLD })).code).toBe(0)
      // As the platform does once sealed: the plain-text copies go.
      await db.collection(COLLECTIONS.users).updateMany({}, { $unset: { 'atproto.password': '' } })
      // gus has a session sealed under the old key.
      expect((await new Writer(db, { pdsUrl: proxy.url, secret: OLD, log }).post({ user: gus, text: 'before the rotation' })).state).toBe('written')

      // Every process now has both keys: reading accepts the old one, sealing uses the new one.
      const both = new Writer(db, { pdsUrl: proxy.url, secret: NEW, previousSecret: OLD, log })
      expect((await both.post({ user: hal, text: 'during the rotation' })).state).toBe('written') // hal logs in: a new-key session
      expect((await both.post({ user: gus, text: 'during the rotation' })).state).toBe('written') // gus reuses his old-key session
      expect(both.sessions.logins).toBe(1)
      // A third user's values were sealed with a key nobody has any more.
      const third = new SecretBox(THIRD)
      await db.collection(COLLECTIONS.credentials).insertOne({ _id: 'auth0|ivy' as never, did: 'did:plc:ivy', password: third.seal('lost'), updatedAt: new Date() })
      await db.collection(COLLECTIONS.sessions).insertOne({ _id: 'auth0|ivy' as never, tokens: third.seal('{}'), updatedAt: new Date() })

      // What the rotation should find, computed from the stored values themselves.
      const old = new SecretBox(OLD)
      const opensWith = (box: SecretBox, sealed: string) => { try { box.open(sealed); return true } catch { return false } }
      const creds = await db.collection<{ password: string }>(COLLECTIONS.credentials).find().toArray()
      const sessions = await db.collection<{ tokens: string }>(COLLECTIONS.sessions).find().toArray()
      const expected = {
        credentials: { resealed: creds.filter((c) => opensWith(old, c.password)).length, current: 0, unreadable: 1 },
        sessions: { resealed: sessions.filter((s) => opensWith(old, s.tokens)).length, current: sessions.filter((s) => opensWith(new SecretBox(NEW), s.tokens)).length, dropped: 1 },
        unreadableUsers: ['auth0|ivy'],
        busy: 0,
      }
      expect(expected.credentials.resealed).toBe(2)
      expect(expected.sessions.resealed + expected.sessions.current).toBe(2)

      const first = await cli(['rotate-secret', '--json'], { ...env, MOODSYNC_SECRET: NEW, MOODSYNC_SECRET_PREVIOUS: OLD })
      expect(JSON.parse(first.out)).toEqual(expected)
      expect(first.code).toBe(1) // ivy's password opens with neither key: not done
      // Again: nothing left to re-seal (idempotent), ivy still reported.
      const again = await cli(['rotate-secret', '--json'], { ...env, MOODSYNC_SECRET: NEW, MOODSYNC_SECRET_PREVIOUS: OLD })
      expect(JSON.parse(again.out)).toMatchObject({ credentials: { resealed: 0, current: 2, unreadable: 1 }, sessions: { resealed: 0, current: 2, dropped: 0 } })
      // The operator resets ivy; the check with the new key alone then passes.
      await db.collection(COLLECTIONS.credentials).deleteOne({ _id: 'auth0|ivy' as never })
      const check = await cli(['rotate-secret'], { ...env, MOODSYNC_SECRET: NEW })
      expect(check.code).toBe(0)
      expect(check.out).toMatch(/^credentials: 0 re-sealed, 2 already under MOODSYNC_SECRET, 0 unreadable/)

      // The old key alone opens nothing stored any more, and a post with it fails before storing.
      for (const c of await db.collection<{ password: string }>(COLLECTIONS.credentials).find().toArray()) expect(() => old.open(c.password)).toThrow(DecryptError)
      for (const s of await db.collection<{ tokens: string }>(COLLECTIONS.sessions).find().toArray()) expect(() => old.open(s.tokens)).toThrow(DecryptError)
      await expect(new Writer(db, { pdsUrl: proxy.url, secret: OLD, log }).post({ user: gus, text: 'old key' })).rejects.toBeInstanceOf(WrongSecretError)
      expect(await moods(db).countDocuments({ mood: 'old key' })).toBe(0)

      // The new key alone: posts work, from the re-sealed sessions (no login needed).
      const fresh = new Writer(db, { pdsUrl: proxy.url, secret: NEW, log })
      for (const who of [gus, hal]) expect((await fresh.post({ user: who, text: 'after the rotation' })).state).toBe('written')
      expect(fresh.sessions.logins).toBe(0)
      // And with the sessions gone, logins from the re-sealed passwords.
      await db.collection(COLLECTIONS.sessions).deleteMany({})
      const cold = new Writer(db, { pdsUrl: proxy.url, secret: NEW, log })
      expect((await cold.post({ user: hal, text: 'cold, after the rotation' })).state).toBe('written')
      expect(cold.sessions.logins).toBe(1)
      expect(JSON.stringify(await db.collection(COLLECTIONS.credentials).find().toArray())).not.toContain(accounts.get('gus')!.password)
    } finally {
      await db.dropDatabase()
    }
  })
})
