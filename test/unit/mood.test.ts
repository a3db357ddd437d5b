import { describe, expect, it } from 'vitest'
import { MOOD_NSID, parseMood, toRecord } from '../../src/sync/mood.ts'

const when = '2025-10-31T12:34:56.789Z'
const REF = '64b7f0c2a1b2c3d4e5f60718'
const rec = (fields: Record<string, unknown>) => ({ $type: MOOD_NSID, mood: 'feeling fine', when, ref: REF, ...fields })
const bytes = (s: string) => Buffer.byteLength(s, 'utf8')

// Emoji of several UTF-8 lengths: 4 bytes, 8 (flag), 8 (skin tone), 25 (ZWJ family), 35 (kiss, two tones).
const EMOJI = ['😀', '🇫🇷', '👍🏽', '👨‍👩‍👧‍👦', '👩🏻‍❤️‍💋‍👨🏿']
/** `unit` repeated as often as fits in `limit` bytes, padded with ASCII to exactly `limit`. */
const ofBytes = (unit: string, limit: number) => {
  const text = unit.repeat(Math.floor(limit / bytes(unit)))
  return text + 'a'.repeat(limit - bytes(text))
}

describe('parseMood: valid records', () => {
  const good: [string, unknown, { mood: string; when: string; ref: string }][] = [
    ['minimal (mood, when, ref)', rec({}), { mood: 'feeling fine', when, ref: REF }],
    ['legacy mongoId becomes ref', { $type: MOOD_NSID, mood: 'feeling fine', when, mongoId: REF }, { mood: 'feeling fine', when, ref: REF }],
    ['ref wins over mongoId', rec({ ref: 'new', mongoId: 'old' }), { mood: 'feeling fine', when, ref: 'new' }],
    ["another client's ref, whatever it is", rec({ ref: 'x'.repeat(200) }), { mood: 'feeling fine', when, ref: 'x'.repeat(200) }],
    ['an empty ref (the published schema sets no minimum)', rec({ ref: '' }), { mood: 'feeling fine', when, ref: '' }],
    ['an empty mood (the published schema sets no minimum)', rec({ mood: '' }), { mood: '', when, ref: REF }],
    ['no $type (the collection names it)', { mood: 'x', when, ref: REF }, { mood: 'x', when, ref: REF }],
    ['extra fields from another client are dropped', rec({ langs: ['en'], facets: [], $unknown: 1 }), { mood: 'feeling fine', when, ref: REF }],
    ['a text beside the mood is ignored (not legacy)', rec({ text: 'old' }), { mood: 'feeling fine', when, ref: REF }],
    ['timezone offset', rec({ when: '2025-10-31T14:34:56+02:00' }), { mood: 'feeling fine', when: '2025-10-31T12:34:56.000Z', ref: REF }],
    ['microseconds', rec({ when: '2025-10-31T12:34:56.789123Z' }), { mood: 'feeling fine', when: '2025-10-31T12:34:56.789Z', ref: REF }],
    ['29 February of a leap year', rec({ when: '2024-02-29T12:00:00Z' }), { mood: 'feeling fine', when: '2024-02-29T12:00:00.000Z', ref: REF }],
  ]
  for (const [name, input, expected] of good) {
    it(name, () => {
      const result = parseMood(input)
      expect(result.ok, JSON.stringify(result)).toBe(true)
      if (!result.ok) return
      expect({ ...result.value, when: result.value.when.toISOString() }).toEqual(expected)
    })
  }

  for (const emoji of EMOJI) {
    it(`5,000 bytes of ${emoji} (${bytes(emoji)} bytes each) pass; 5,001 do not`, () => {
      const text = ofBytes(emoji, 5000)
      expect(bytes(text)).toBe(5000)
      expect(parseMood(rec({ mood: text })).ok).toBe(true)
      expect(parseMood(rec({ mood: `${text}a` }))).toEqual({ ok: false, kind: 'oversize', reason: 'mood is 5,001 bytes, over the published limit of 5,000 bytes' })
    })
  }

  it('5,000 plain characters pass', () => {
    expect(parseMood(rec({ mood: 'a'.repeat(5000) })).ok).toBe(true)
  })
})

describe('parseMood: legacy shapes and their refusals, each with its kind', () => {
  it("a 'text' record instead of 'mood' names the legacy shape and the command that rewrites it", () => {
    expect(parseMood({ $type: MOOD_NSID, text: 'old script', when, ref: REF })).toEqual({ ok: false, kind: 'legacy-text', reason: "legacy record: 'text' instead of 'mood' (moodsync normalize rewrites it)" })
    expect(parseMood({ $type: MOOD_NSID, text: 'old script', when, mongoId: REF })).toMatchObject({ ok: false, kind: 'legacy-text' })
  })
  it("a 'text' record naming no mood says normalize leaves it", () => {
    expect(parseMood({ $type: MOOD_NSID, text: 'old script', when })).toEqual({ ok: false, kind: 'legacy-text', reason: "legacy record: 'text' instead of 'mood', and no ref or legacy mongoId (it names no mood: moodsync normalize leaves it)" })
  })
  it('neither ref nor mongoId', () => {
    expect(parseMood({ $type: MOOD_NSID, mood: 'x', when })).toEqual({ ok: false, kind: 'no-ref', reason: 'ref is missing (and no legacy mongoId)' })
  })
  it('oversize counts UTF-8 bytes, not characters', () => {
    const text = '😀'.repeat(1251) // 1,251 characters, 5,004 bytes
    expect(parseMood(rec({ mood: text }))).toEqual({ ok: false, kind: 'oversize', reason: 'mood is 5,004 bytes, over the published limit of 5,000 bytes' })
  })
  it('an impossible calendar date is refused, not rolled over to the next month', () => {
    for (const bad of ['2025-02-30T12:00:00Z', '2023-02-29T12:00:00+02:00', '2025-04-31T00:00:00Z', '2025-13-01T00:00:00Z', '2025-00-10T00:00:00Z']) {
      const result = parseMood(rec({ when: bad }))
      expect(result.ok, bad).toBe(false)
      if (!result.ok) expect(result).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(/^when (names no calendar day|.*datetime)|Invalid datetime/) })
    }
    expect(parseMood(rec({ when: '2025-02-30T12:00:00Z' }))).toMatchObject({ reason: 'when names no calendar day: 2025-02-30 does not exist (got "2025-02-30T12:00:00Z")' })
  })
})

describe('parseMood: invalid records, each with its reason', () => {
  const bad: [string, unknown, RegExp][] = [
    ['null', null, /must be an object/],
    ['a string', 'hello', /must be an object/],
    ['an array', [], /must be an object/],
    ['wrong $type', rec({ $type: 'app.bsky.feed.post' }), /\$type must be computer\.aesthetic\.mood/],
    ['missing mood', { $type: MOOD_NSID, when, ref: REF }, /mood/],
    ['missing when', { $type: MOOD_NSID, mood: 'x', ref: REF }, /when/],
    ['mood is a number', rec({ mood: 42 }), /string.*mood|mood.*string/i],
    ['5,001 ASCII characters', rec({ mood: 'a'.repeat(5001) }), /^mood is 5,001 bytes, over the published limit of 5,000 bytes$/],
    ['when without timezone', rec({ when: '2025-10-31T12:34:56' }), /datetime/i],
    ['when not a date', rec({ when: 'yesterday' }), /datetime/i],
    ['when a number', rec({ when: 1730000000 }), /when/],
    ['ref a number', rec({ ref: 12 }), /ref/],
    ['legacy mongoId ill-typed', { $type: MOOD_NSID, mood: 'x', when, mongoId: { $oid: 'abc' } }, /mongoId/],
  ]
  for (const [name, input, reason] of bad) {
    it(name, () => {
      const result = parseMood(input)
      expect(result.ok).toBe(false)
      if (result.ok) return
      expect(result.reason).toMatch(reason)
    })
  }

  it('the byte bound holds even for one grapheme (a letter with many combining marks)', () => {
    const zalgo = `a${'\u0301'.repeat(90_000)}`
    expect(parseMood(rec({ mood: zalgo }))).toEqual({ ok: false, kind: 'oversize', reason: `mood is ${bytes(zalgo).toLocaleString('en-US')} bytes, over the published limit of 5,000 bytes` })
  })
})

describe('toRecord', () => {
  it('writes ref, never mongoId, and round-trips through parseMood', () => {
    const mood = { mood: 'round trip ✨', when: new Date(when), ref: 'abc' }
    const record = toRecord(mood)
    expect(record).toEqual({ $type: MOOD_NSID, mood: 'round trip ✨', when, ref: 'abc' })
    expect(parseMood(record)).toEqual({ ok: true, value: mood })
  })
})
