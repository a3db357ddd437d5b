import { describe, expect, it } from 'vitest'
import { MOOD_NSID, parseMood, toRecord } from '../../src/sync/mood.ts'

const when = '2025-10-31T12:34:56.789Z'
const rec = (fields: Record<string, unknown>) => ({ $type: MOOD_NSID, mood: 'feeling fine', when, ...fields })

// Emoji of several UTF-8 lengths: 4 bytes, 8 (flag), 8 (skin tone), 25 (ZWJ family), 35 (kiss, two tones).
const EMOJI = ['😀', '🇫🇷', '👍🏽', '👨‍👩‍👧‍👦', '👩🏻‍❤️‍💋‍👨🏿']
const graphemes = (s: string) => [...new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(s)].length

describe('parseMood: valid records', () => {
  const good: [string, unknown, { mood: string; when: string; ref?: string }][] = [
    ['minimal', rec({}), { mood: 'feeling fine', when }],
    ['with ref', rec({ ref: '64b7f0c2a1b2c3d4e5f60718' }), { mood: 'feeling fine', when, ref: '64b7f0c2a1b2c3d4e5f60718' }],
    ['legacy mongoId becomes ref', rec({ mongoId: '64b7f0c2a1b2c3d4e5f60718' }), { mood: 'feeling fine', when, ref: '64b7f0c2a1b2c3d4e5f60718' }],
    ['ref wins over mongoId', rec({ ref: 'new', mongoId: 'old' }), { mood: 'feeling fine', when, ref: 'new' }],
    ['no $type (the collection names it)', { mood: 'x', when }, { mood: 'x', when }],
    ['extra fields from another client are dropped', rec({ langs: ['en'], facets: [], $unknown: 1 }), { mood: 'feeling fine', when }],
    ['timezone offset', rec({ when: '2025-10-31T14:34:56+02:00' }), { mood: 'feeling fine', when: '2025-10-31T12:34:56.000Z' }],
    ['microseconds', rec({ when: '2025-10-31T12:34:56.789123Z' }), { mood: 'feeling fine', when: '2025-10-31T12:34:56.789Z' }],
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
    it(`5,000 × ${emoji} (${Buffer.byteLength(emoji)} bytes each) passes`, () => {
      const text = emoji.repeat(5000)
      expect(graphemes(text)).toBe(5000)
      expect(parseMood(rec({ mood: text })).ok).toBe(true)
    })
  }

  it('5,000 plain characters pass', () => {
    expect(parseMood(rec({ mood: 'a'.repeat(5000) })).ok).toBe(true)
  })
})

describe('parseMood: invalid records, each with its reason', () => {
  const bad: [string, unknown, RegExp][] = [
    ['null', null, /must be an object/],
    ['a string', 'hello', /must be an object/],
    ['an array', [], /must be an object/],
    ['wrong $type', rec({ $type: 'app.bsky.feed.post' }), /\$type must be computer\.aesthetic\.mood/],
    ['missing mood', { $type: MOOD_NSID, when }, /mood/],
    ['missing when', { $type: MOOD_NSID, mood: 'x' }, /when/],
    ['mood is a number', rec({ mood: 42 }), /string.*mood|mood.*string/i],
    ['mood is empty', rec({ mood: '' }), /too small.*mood|mood/],
    ['5,001 graphemes', rec({ mood: '😀'.repeat(5001) }), /grapheme.*5000/],
    ['5,001 ASCII characters', rec({ mood: 'a'.repeat(5001) }), /grapheme.*5000|too big/],
    ['when without timezone', rec({ when: '2025-10-31T12:34:56' }), /datetime/i],
    ['when not a date', rec({ when: 'yesterday' }), /datetime/i],
    ['when a number', rec({ when: 1730000000 }), /when/],
    ['ref a number', rec({ ref: 12 }), /ref/],
    ['ref empty', rec({ ref: '' }), /ref/],
    ['ref too long', rec({ ref: 'x'.repeat(129) }), /ref/],
    ['legacy mongoId ill-typed', rec({ mongoId: { $oid: 'abc' } }), /mongoId/],
  ]
  for (const [name, input, reason] of bad) {
    it(name, () => {
      const result = parseMood(input)
      expect(result.ok).toBe(false)
      if (result.ok) return
      expect(result.reason).toMatch(reason)
    })
  }

  it('a byte bound holds even when graphemes are few', () => {
    // One grapheme can be arbitrarily long (a base letter with many combining marks).
    const zalgo = `a${'\u0301'.repeat(90_000)}`
    expect(graphemes(zalgo)).toBe(1)
    const result = parseMood(rec({ mood: zalgo }))
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.reason).toMatch(/too big|bytes|length/i)
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
