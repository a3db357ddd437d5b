import { ObjectId } from 'mongodb'
import { describe, expect, it } from 'vitest'
import { PdsError } from '../../src/atproto/xrpc.ts'
import { NoCredentialsError, WrongSecretError } from '../../src/errors.ts'
import type { MoodDoc } from '../../src/store/collections.ts'
import { deletePlan } from '../../src/writer/plans.ts'
import { writeVerdict } from '../../src/writer/verdict.ts'

describe('writeVerdict: the one retry decision for writes', () => {
  const now = 1_700_000_000_000

  it('retries what may pass later, and marks a lost answer uncertain', () => {
    expect(writeVerdict(new PdsError('m', 0, undefined, 'timed out'), 0, now)).toMatchObject({ retry: true, uncertain: true })
    expect(writeVerdict(new PdsError('m', 502, undefined, 'bad gateway'), 0, now)).toMatchObject({ retry: true, uncertain: true })
    expect(writeVerdict(new PdsError('m', 401, 'AccountDeactivated', ''), 0, now)).toMatchObject({ retry: true, uncertain: false })
  })

  it("waits for a 429's reset, not the backoff", () => {
    const verdict = writeVerdict(new PdsError('m', 429, 'RateLimitExceeded', '', { retryAt: now + 42_000 }), 7, now)
    expect(verdict).toMatchObject({ retry: true, delayMs: 42_000, uncertain: false })
  })

  it('backs off longer with every attempt, within an hour', () => {
    const delays = [0, 5, 30].map((attempts) => (writeVerdict(new PdsError('m', 503, undefined, ''), attempts, now) as { delayMs: number }).delayMs)
    expect(delays[0]).toBeLessThanOrEqual(2_000)
    expect(delays[1]).toBeGreaterThanOrEqual(1_000)
    expect(delays[2]).toBeLessThanOrEqual(3_600_000)
  })

  it('gives up on refusals and missing credentials', () => {
    expect(writeVerdict(new PdsError('m', 400, 'InvalidRecord', 'bad'), 0, now)).toEqual({ retry: false, reason: 'm: HTTP 400 InvalidRecord: bad' })
    expect(writeVerdict(new NoCredentialsError('none'), 0, now)).toMatchObject({ retry: false })
  })

  it('keeps a change that the wrong key kept from being sent: a process with the right key sends it', () => {
    expect(writeVerdict(new WrongSecretError('wrong key'), 0, now)).toMatchObject({ retry: true, uncertain: false, reason: 'wrong key' })
  })

  it('retries the unexpected as uncertain, so one odd failure never blocks the outbox', () => {
    expect(writeVerdict(new TypeError('surprise'), 0, now)).toMatchObject({ retry: true, uncertain: true, reason: 'surprise' })
  })
})

describe('deletePlan: what delete --dry-run reports', () => {
  const base = { _id: new ObjectId(), user: 'u', mood: 'm', when: new Date() }

  it('a mood with a record: both sides', () => {
    const doc: MoodDoc = { ...base, atproto: { did: 'did:plc:a', rkey: '3k', state: 'confirmed' } }
    expect(deletePlan(doc)).toEqual({ id: base._id.toHexString(), did: 'did:plc:a', rkey: '3k', state: 'confirmed', alreadyDeleted: false, deletesRecord: true })
  })

  it('a mood with no record: MongoDB only', () => {
    expect(deletePlan({ ...base, atproto: { state: 'no-account' } })).toMatchObject({ alreadyDeleted: false, deletesRecord: false })
    expect(deletePlan({ ...base, deleted: true })).toMatchObject({ alreadyDeleted: true, deletesRecord: false })
  })

  it('a delete already queued or done: nothing to do', () => {
    const doc: MoodDoc = { ...base, deleted: true, atproto: { did: 'did:plc:a', rkey: '3k', state: 'pending', op: 'delete' } }
    expect(deletePlan(doc)).toMatchObject({ alreadyDeleted: true, deletesRecord: false })
  })

  it('hidden by the network (a deactivated account) is not a delete of ours: the record would be deleted', () => {
    const doc: MoodDoc = { ...base, deleted: true, atproto: { did: 'did:plc:a', rkey: '3k', hidden: 'deactivated' } }
    expect(deletePlan(doc)).toMatchObject({ alreadyDeleted: false, deletesRecord: true })
  })
})
