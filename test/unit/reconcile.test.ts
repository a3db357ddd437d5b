import { ObjectId } from 'mongodb'
import { describe, expect, it } from 'vitest'
import { compareSubject, countsOf, driftOf } from '../../src/reconcile/compare.ts'
import { forEachConcurrent } from '../../src/reconcile/pool.ts'
import { formatDuration, formatProgress } from '../../src/reconcile/progress.ts'
import { repairOps } from '../../src/reconcile/repair.ts'
import type { MoodDoc } from '../../src/store/collections.ts'
import type { UpsertOp } from '../../src/store/records.ts'

const DID = 'did:plc:reconcileunit0000000000'
const USER = 'auth0|unit'
const WHEN = new Date('2025-01-01T00:00:00.000Z')
let tid = 0
const nextRkey = () => `3kaaaaaaaa${(tid++).toString(32).padStart(3, 'a')}`

const record = (rkey: string, mood: string, ref?: string, cid = `cid-${rkey}-${mood}`): UpsertOp => ({ kind: 'upsert', did: DID, rkey, rev: '3zzzzzzzzzz22', cid, fields: { mood, when: WHEN }, ...(ref ? { ref } : {}), user: USER })
const doc = (mood: string, atproto?: MoodDoc['atproto'], extra: Partial<MoodDoc> = {}): MoodDoc => ({ _id: new ObjectId(), user: USER, mood, when: WHEN, ...(atproto ? { atproto } : {}), ...extra })

describe('compareSubject', () => {
  it('sorts every record and document into exactly one kind', () => {
    const synced = doc('same')
    const syncedRec = record(nextRkey(), 'same', synced._id.toHexString())
    synced.atproto = { did: DID, rkey: syncedRec.rkey, cid: syncedRec.cid }
    const legacy = doc('legacy')
    const legacyRec = record(nextRkey(), 'legacy', legacy._id.toHexString())
    legacy.atproto = { rkey: legacyRec.rkey } // today's shape: rkey only, no CID
    const edited = doc('old text')
    const editedRec = record(nextRkey(), 'new text', edited._id.toHexString())
    edited.atproto = { did: DID, rkey: editedRec.rkey, cid: 'cid-old' }
    const gone = doc('record deleted', { did: DID, rkey: nextRkey(), cid: 'cid-gone' })
    const never = doc('never written')
    const noAccountState = doc('posted without account', { state: 'no-account' })
    const pending = doc('pending', { did: DID, rkey: nextRkey(), cid: 'cid-p', state: 'pending', op: 'put' })
    const written = doc('written', { did: DID, rkey: nextRkey(), cid: 'cid-w', state: 'written', op: 'put' })
    const writtenRec = record(written.atproto!.rkey!, 'written', written._id.toHexString(), 'cid-w')
    const lostLink = doc('lost link')
    const lostLinkRec = record(nextRkey(), 'lost link', lostLink._id.toHexString())
    const foreign = record(nextRkey(), 'from another app')
    const dupe = record(nextRkey(), 'same', synced._id.toHexString())
    const deletedDoc = doc('deleted both sides', { did: DID, rkey: nextRkey() }, { deleted: true })
    // Refused by migration: still too long (its own kind, not drift), shortened since (to write), refused otherwise.
    const tooLong = doc('x'.repeat(5001), { state: 'failed', error: 'mood is 5,001 bytes, over the published limit of 5,000 bytes', refused: 'oversize' })
    const shortened = doc('short now', { state: 'failed', error: 'mood is 5,001 bytes, over the published limit of 5,000 bytes', refused: 'oversize' })
    const refused = doc('refused', { state: 'failed', error: 'some other reason', refused: 'invalid' })

    const diff = compareSubject({
      did: DID,
      user: USER,
      invalid: 2,
      noRef: 3,
      legacyText: 4,
      oversize: 5,
      legacyMongoId: 6,
      records: [syncedRec, legacyRec, editedRec, writtenRec, lostLinkRec, foreign, dupe],
      docs: [synced, legacy, edited, gone, never, noAccountState, pending, written, lostLink, deletedDoc, tooLong, shortened, refused],
    })
    expect(countsOf(diff)).toEqual({ inSync: 3, atprotoOnly: 2, mongoOnly: 1, unmigrated: 3, differs: 1, duplicates: 1, unconfirmed: 1, noAccount: 0, invalid: 2, noRef: 3, legacyText: 4, oversize: 5, legacyMongoId: 6, tooLong: 1, refused: 1 })
    expect(diff.tooLong).toEqual([tooLong])
    expect(diff.refused).toEqual([refused])
    expect(diff.links.map((op) => op.rkey)).toEqual([lostLinkRec.rkey])
    expect(diff.duplicates).toEqual([{ ref: synced._id.toHexString(), keep: syncedRec.rkey, drop: [dupe.rkey] }])
    expect(diff.confirmable.map((op) => op.rkey)).toEqual([written.atproto!.rkey])
    expect(diff.unrecorded.map((op) => op.rkey)).toEqual([legacyRec.rkey])
    expect(diff.unmigrated).toEqual([never, noAccountState, shortened])
    // Refused moods and refused records are not drift: no command can write them as they are.
    expect(driftOf(countsOf(diff))).toBe(2 + 1 + 3 + 1 + 1 + 1)
  })

  it('keeps the record MongoDB points to, else the oldest', () => {
    const pointed = doc('x')
    const [a, b, c] = [nextRkey(), nextRkey(), nextRkey()]
    pointed.atproto = { did: DID, rkey: b, cid: `cid-${b}-x` }
    const ref = pointed._id.toHexString()
    const diff = compareSubject({ did: DID, user: USER, invalid: 0, records: [record(a, 'x', ref), record(b, 'x', ref), record(c, 'x', ref)], docs: [pointed] })
    expect(diff.duplicates).toEqual([{ ref, keep: b, drop: [a, c] }])
    expect(countsOf(diff)).toMatchObject({ inSync: 1, duplicates: 2, atprotoOnly: 0 })

    const orphanRef = new ObjectId().toHexString()
    const unpointed = compareSubject({ did: DID, user: USER, invalid: 0, records: [record(c, 'y', orphanRef), record(a, 'y', orphanRef)], docs: [] })
    expect(unpointed.duplicates).toEqual([{ ref: orphanRef, keep: a, drop: [c] }])
  })

  it('a user without an account has only no-account moods, and no drift', () => {
    const diff = compareSubject({ did: null, user: USER, invalid: 0, records: [], docs: [doc('a'), doc('b'), doc('c', undefined, { deleted: true })] })
    expect(countsOf(diff)).toMatchObject({ noAccount: 2, inSync: 0 })
    expect(driftOf(countsOf(diff))).toBe(0)
  })
})

describe('repairOps', () => {
  it('plans each kind in its direction and turns it into store ops', () => {
    const gone = doc('gone', { did: DID, rkey: nextRkey(), cid: 'c1' })
    const writtenGone = doc('written then deleted elsewhere', { did: DID, rkey: nextRkey(), cid: 'c2', state: 'written', op: 'put' })
    const foreign = record(nextRkey(), 'foreign')
    const diff = compareSubject({ did: DID, user: USER, invalid: 0, records: [foreign], docs: [gone, writtenGone, doc('never')] })
    const snapshot = { did: DID, rev: '3zzzzzzzzzz22', pds: 'http://pds', records: [], via: 'car' as const, bytes: 0 }
    const { ops, plan } = repairOps({ subject: { did: DID, user: USER }, diff, snapshot, records: [foreign] })
    expect(plan).toEqual({ restore: 1, update: 0, markDeleted: 2, push: 1, retry: 0, confirm: 0, duplicates: 0 })
    expect(ops).toEqual([
      foreign,
      { kind: 'delete', did: DID, rkey: gone.atproto!.rkey, rev: snapshot.rev },
      { kind: 'delete', did: DID, rkey: writtenGone.atproto!.rkey, rev: snapshot.rev },
    ])
  })
})

describe('forEachConcurrent', () => {
  it('never runs more than the limit at once, and runs everything', async () => {
    let running = 0
    let peak = 0
    const done: number[] = []
    await forEachConcurrent(Array.from({ length: 20 }, (_, i) => i), 3, undefined, async (i) => {
      running++
      peak = Math.max(peak, running)
      await new Promise((resolve) => setImmediate(resolve))
      done.push(i)
      running--
    })
    expect(peak).toBe(3)
    expect(done.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it('stops taking items once aborted; items started finish', async () => {
    const controller = new AbortController()
    const started: number[] = []
    let finished = 0
    async function* items() {
      for (let i = 0; i < 100; i++) yield i
    }
    await forEachConcurrent(items(), 2, controller.signal, async (i) => {
      started.push(i)
      if (started.length === 5) controller.abort()
      await new Promise((resolve) => setImmediate(resolve))
      finished++
    })
    expect(started.length).toBeLessThan(8)
    expect(finished).toBe(started.length)
  })
})

describe('progress', () => {
  it('shows repos, moods, rate and ETA', () => {
    expect(formatProgress('backfill', { done: 25, total: 100, failed: 1, records: 2500 }, 10_000)).toBe('backfill: 25/100 repos (1 failed), 2500 moods, 2.5 repos/s, ETA 30s')
    expect(formatProgress('backfill', { done: 3, failed: 0, records: 30 }, 1_000)).toBe('backfill: 3 repos, 30 moods, 3.0 repos/s')
    expect(formatDuration(3_725_000)).toBe('1h02m')
    expect(formatDuration(125_000)).toBe('2m05s')
  })
})
