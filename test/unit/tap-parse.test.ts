import { describe, expect, it } from 'vitest'
import { parseTapEvent as parseTap } from '../../src/ingest/tap.ts'

const parseTapEvent = (text: string) => parseTap(text).events
import { MOOD_NSID } from '../../src/sync/mood.ts'

const did = 'did:plc:abcdefghijklmnopqrstuvwx'
const record = (r: Record<string, unknown>, id = 7) =>
  JSON.stringify({ id, type: 'record', record: { live: true, did, rev: '3l3qo2vutsw2b', collection: MOOD_NSID, rkey: '3l3qo2vuowo2b', ...r } })

describe('parseTapEvent', () => {
  it('create and update become an upsert with the record; the cursor is Tap’s event id', () => {
    for (const action of ['create', 'update']) {
      expect(parseTapEvent(record({ action, cid: 'bafyrei', record: { $type: MOOD_NSID, mood: 'hi', when: '2024-01-01T00:00:00Z' } }))).toEqual([
        { kind: 'commit', cursor: 7, did, rev: '3l3qo2vutsw2b', ops: [{ action: 'upsert', collection: MOOD_NSID, rkey: '3l3qo2vuowo2b', cid: 'bafyrei', record: { $type: MOOD_NSID, mood: 'hi', when: '2024-01-01T00:00:00Z' } }] },
      ])
    }
  })

  it('delete carries no record; another collection is skipped', () => {
    expect(parseTapEvent(record({ action: 'delete' }))).toEqual([{ kind: 'commit', cursor: 7, did, rev: '3l3qo2vutsw2b', ops: [{ action: 'delete', collection: MOOD_NSID, rkey: '3l3qo2vuowo2b' }] }])
    expect(parseTapEvent(record({ action: 'create', collection: 'app.bsky.feed.post', cid: 'x', record: {} }))).toEqual([{ kind: 'skip', cursor: 7 }])
  })

  it('says which id to acknowledge and whether the event is live', () => {
    expect(parseTap(record({ action: 'delete' }, 12))).toMatchObject({ id: 12, live: true })
    expect(parseTap(record({ action: 'delete', live: false }, 13))).toMatchObject({ id: 13, live: false })
    // A record that merely holds a `live` field says nothing of the event.
    expect(parseTap(record({ action: 'create', live: false, cid: 'x', record: { live: true } }))).toMatchObject({ live: false })
    expect(parseTap('{"nope')).toEqual({ live: false, events: [expect.objectContaining({ kind: 'invalid' })] })
  })

  it('an identity event is the handle and the account status', () => {
    const text = (identity: Record<string, unknown>) => JSON.stringify({ id: 9, type: 'identity', identity: { did, handle: 'alice.test', ...identity } })
    expect(parseTapEvent(text({ is_active: true, status: 'active' }))).toEqual([
      { kind: 'identity', cursor: 9, did, handle: 'alice.test' },
      { kind: 'account', cursor: 9, did, active: true },
    ])
    expect(parseTapEvent(text({ is_active: false, status: 'takendown' }))[1]).toEqual({ kind: 'account', cursor: 9, did, active: false, status: 'takendown' })
  })

  it('bad input becomes one invalid event with its reason, never a throw', () => {
    const cases: [string, RegExp][] = [
      ['{"id": 1, "type": ', /malformed JSON/],
      ['[1,2]', /not a JSON object/],
      [JSON.stringify({ type: 'record', record: {} }), /id is missing/],
      [JSON.stringify({ id: 1, type: 'labels' }), /unknown event type "labels"/],
      [record({ action: 'create', cid: 'x' }), /create without a record/],
      [record({ action: 'create', record: {} }), /create without a cid/],
      [record({ action: 'frobnicate' }), /unknown record action/],
      [record({ action: 'create', rkey: '' }), /rkey is missing/],
      [record({ did: 'nope' }), /not a DID/],
      [JSON.stringify({ id: 3, type: 'identity', identity: { did } }), /is_active/],
    ]
    for (const [text, reason] of cases) {
      const events = parseTapEvent(text)
      expect(events).toHaveLength(1)
      expect(events[0]).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(reason) })
    }
  })
})
