import { describe, expect, it } from 'vitest'
import { parseJetstreamEvent } from '../../src/ingest/jetstream.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'

const did = 'did:plc:abcdefghijklmnopqrstuvwx'
const commit = (c: Record<string, unknown>) => JSON.stringify({ did, time_us: 1_725_911_162_329_308, kind: 'commit', commit: { rev: '3l3qo2vutsw2b', collection: MOOD_NSID, rkey: '3l3qo2vuowo2b', ...c } })

describe('parseJetstreamEvent', () => {
  it('create and update become an upsert op carrying the raw record', () => {
    for (const operation of ['create', 'update']) {
      const ev = parseJetstreamEvent(commit({ operation, cid: 'bafyrei', record: { $type: MOOD_NSID, mood: 'hi', when: '2024-01-01T00:00:00Z' } }))
      expect(ev).toEqual({
        kind: 'commit',
        cursor: 1_725_911_162_329_308,
        did,
        rev: '3l3qo2vutsw2b',
        ops: [{ action: 'upsert', collection: MOOD_NSID, rkey: '3l3qo2vuowo2b', cid: 'bafyrei', record: { $type: MOOD_NSID, mood: 'hi', when: '2024-01-01T00:00:00Z' } }],
        emittedAt: 1_725_911_162_329.308,
      })
    }
  })

  it("Jetstream v2's own sequence (`cursor`) is the cursor; time_us still dates the event", () => {
    const v2 = JSON.parse(commit({ operation: 'delete' }))
    expect(parseJetstreamEvent(JSON.stringify({ ...v2, cursor: 42 }))).toMatchObject({ kind: 'commit', cursor: 42, emittedAt: 1_725_911_162_329.308 })
    // A value v2 would read as time_us is not a sequence.
    expect(parseJetstreamEvent(JSON.stringify({ ...v2, cursor: 1_725_911_162_329_999 }))).toMatchObject({ cursor: 1_725_911_162_329_308 })
  })

  it("Jetstream v2's sync event asks for the repo to be read again, if we know it", () => {
    expect(parseJetstreamEvent(JSON.stringify({ did, time_us: 9, cursor: 5, kind: 'sync', sync: { did, rev: '3l3qo2vutsw2b', seq: 1, time: 'x' } }))).toEqual({
      kind: 'resync',
      cursor: 5,
      did,
      reason: expect.stringMatching(/sync/),
      onlyIfKnown: true,
    })
  })

  it('delete carries no record', () => {
    expect(parseJetstreamEvent(commit({ operation: 'delete' }))).toMatchObject({ kind: 'commit', ops: [{ action: 'delete', rkey: '3l3qo2vuowo2b' }] })
  })

  it('another collection is skipped but still moves the cursor', () => {
    expect(parseJetstreamEvent(commit({ operation: 'create', collection: 'app.bsky.feed.post', cid: 'x', record: {} }))).toEqual({ kind: 'skip', cursor: 1_725_911_162_329_308, emittedAt: 1_725_911_162_329.308 })
  })

  it('account and identity events', () => {
    const account = JSON.stringify({ did, time_us: 5, kind: 'account', account: { active: false, did, seq: 1, time: 'x', status: 'takendown' } })
    expect(parseJetstreamEvent(account)).toMatchObject({ kind: 'account', cursor: 5, did, active: false, status: 'takendown' })
    const identity = JSON.stringify({ did, time_us: 6, kind: 'identity', identity: { did, handle: 'a.test', seq: 2, time: 'x' } })
    expect(parseJetstreamEvent(identity)).toMatchObject({ kind: 'identity', cursor: 6, handle: 'a.test' })
  })

  const invalid: [string, string, RegExp, number | undefined][] = [
    ['malformed JSON', '{"did": "did:plc:x", "time_us": 1', /malformed JSON/, undefined],
    ['not an object', '[1,2]', /not a JSON object/, undefined],
    ['no time_us', JSON.stringify({ did, kind: 'commit' }), /time_us/, undefined],
    ['bad did', JSON.stringify({ did: 'alice', time_us: 9, kind: 'commit' }), /not a DID/, 9],
    ['unknown kind', JSON.stringify({ did, time_us: 9, kind: 'labels' }), /unknown event kind "labels"/, 9],
    ['unknown operation', commit({ operation: 'upsert' }), /unknown commit operation/, 1_725_911_162_329_308],
    ['create without cid', commit({ operation: 'create', record: {} }), /without a cid/, 1_725_911_162_329_308],
    ['create without record', commit({ operation: 'create', cid: 'x' }), /without a record/, 1_725_911_162_329_308],
    ['commit without rev', JSON.stringify({ did, time_us: 9, kind: 'commit', commit: { operation: 'delete', collection: MOOD_NSID, rkey: 'k' } }), /rev/, 9],
    ['account without active', JSON.stringify({ did, time_us: 9, kind: 'account', account: {} }), /account\.active/, 9],
  ]
  for (const [name, text, reason, cursor] of invalid) {
    it(`${name} -> invalid with its reason`, () => {
      const ev = parseJetstreamEvent(text)
      expect(ev.kind).toBe('invalid')
      if (ev.kind !== 'invalid') return
      expect(ev.reason).toMatch(reason)
      expect(ev.cursor).toBe(cursor)
      expect(ev.raw).toBe(text)
    })
  }
})
