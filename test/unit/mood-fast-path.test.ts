import { isDeepStrictEqual } from 'node:util'
import { describe, expect, it } from 'vitest'
import { CORPUS } from '../../src/lexicon-contract/corpus.ts'
import { commonMood, MOOD_NSID, parseMood, parseMoodBySchema, type MoodParse } from '../../src/sync/mood.ts'
// Seeded, so a failure names an input that comes again.
import { mulberry32 } from '../../bench/lib/fixtures.ts'

// parseMood takes a fast path for the common record (commonMood) and the generated schema for
// everything else. The fast path may only accept, and only what the schema path accepts, with
// the same value: every input below must get the same answer (verdict, reason, refusal kind,
// value) from both.

const WHEN = '2025-03-01T12:00:00.000Z'
const REF = '65f0c0ffee0123456789abcd'
const EMOJI = '\u{1F600}' // 4 bytes, 2 units
const EURO = '\u20AC' // 3 bytes, 1 unit
const E_ACUTE = '\u00E9' // 2 bytes, 1 unit
const LONE_HIGH = '\uD83D' // a lone surrogate: 3 bytes (U+FFFD) for Buffer and for lex-data


/** Mood texts at and around the 5,000-byte bound and the fast path's 1,666-unit bound, in every width. */
const MOODS: unknown[] = [
  'feeling fine',
  '',
  'listening to the rain 🌧️',
  'a'.repeat(1666),
  'a'.repeat(1667),
  'a'.repeat(4999),
  'a'.repeat(5000),
  'a'.repeat(5001),
  EURO.repeat(1666),
  EURO.repeat(1667),
  EURO.repeat(1666) + 'ab',
  EURO.repeat(1666) + 'abc',
  E_ACUTE.repeat(1666),
  E_ACUTE.repeat(2500),
  E_ACUTE.repeat(2500) + 'a',
  EMOJI.repeat(833),
  EMOJI.repeat(834),
  EMOJI.repeat(1250),
  EMOJI.repeat(1250) + 'a',
  EMOJI.repeat(1249) + E_ACUTE + 'ab',
  EMOJI.repeat(1249) + EURO + 'ab',
  LONE_HIGH.repeat(1666),
  LONE_HIGH.repeat(1667),
  LONE_HIGH.repeat(5000),
  'a' + LONE_HIGH,
  '\u0000 nul and \uFFFF',
  42,
  null,
  undefined,
  true,
  ['hi'],
  { text: 'hi' },
  new String('hi'),
]

/** Datetimes: the canonical form, every other form the lexicon allows, impossible dates and times, near misses. */
const WHENS: unknown[] = [
  WHEN,
  '2024-02-29T12:00:00.000Z', // leap day
  '2025-02-29T12:00:00.000Z', // no such day
  '2025-02-30T12:00:00.000Z',
  '2025-04-31T12:00:00.000Z',
  '2025-12-31T23:59:59.999Z',
  '2025-13-01T12:00:00.000Z',
  '2025-00-01T12:00:00.000Z',
  '2025-01-00T12:00:00.000Z',
  '2025-01-32T12:00:00.000Z',
  '2025-01-01T24:00:00.000Z',
  '2025-01-01T23:60:00.000Z',
  '2025-01-01T23:59:60.000Z', // a leap second: the pattern allows :60
  '1900-02-29T00:00:00.000Z', // not a leap year
  '2000-02-29T00:00:00.000Z', // a leap year
  '0000-01-01T00:00:00.000Z',
  '0000-02-29T00:00:00.000Z', // year 0 is a leap year
  '0001-01-01T00:00:00.000Z',
  '0099-12-31T23:59:59.999Z', // Date.UTC would read 99 as 1999
  '1969-12-31T23:59:59.999Z',
  '1970-01-01T00:00:00.000Z',
  '9999-12-31T23:59:59.999Z',
  '+010000-01-01T00:00:00.000Z',
  '-000001-01-01T00:00:00.000Z',
  '+002025-03-01T12:00:00.000Z',
  '2025-03-01T12:00:00Z',
  '2025-03-01T12:00:00.0Z',
  '2025-03-01T12:00:00.00Z',
  '2025-03-01T12:00:00.0000Z',
  '2025-03-01T12:00:00.123456Z',
  '2025-03-01T12:00:00.1234567890123Z',
  '2025-03-01T12:00:00.000+00:00',
  '2025-03-01T12:00:00.000-00:00',
  '2025-03-01T14:00:00.000+02:00',
  '2025-03-01T12:00:00+24:00',
  '2025-03-01T12:00:00.000z',
  '2025-03-01t12:00:00.000Z',
  '2025-03-01 12:00:00.000Z',
  '2025-03-01T12:00:00,000Z',
  '2025-03-01T12:00:00.000',
  '2025-03-01T12:00:00.000ZZ',
  ' 2025-03-01T12:00:00.000Z',
  '2025-03-01T12:00:00.000Z ',
  '2025-3-01T12:00:00.000Z',
  '2025-03-01T12:0:00.000Z',
  '20250-3-01T12:00:00.000Z',
  '2025-03-01T12:00:00.0a0Z',
  '２０２５-03-01T12:00:00.000Z', // full-width digits
  '2025-03-01',
  '2025-03-01T12:00Z',
  'Sat Mar 01 2025 12:00:00 GMT+0000',
  'yesterday',
  '',
  '2025-03-01T12:00:00.000Z'.repeat(3),
  1740830400000,
  null,
  undefined,
  new Date(WHEN),
  new String(WHEN),
]

const REFS: unknown[] = [REF, '', 'x'.repeat(300), 42, null, undefined, { $oid: REF }]

/** $type, mongoId and extra fields. `undefined` in a field means the field is absent. */
const SHAPES: Record<string, unknown>[] = [
  { $type: MOOD_NSID },
  {},
  { $type: 'app.bsky.feed.post' },
  { $type: null },
  { $type: 42 },
  { $type: MOOD_NSID, mongoId: REF },
  { $type: MOOD_NSID, mongoId: 42 },
  { $type: MOOD_NSID, mongoId: null },
  { $type: MOOD_NSID, text: 'restored' },
  { $type: MOOD_NSID, langs: ['en'], facets: [], app: 'aesthetic.computer', meta: { v: 2, deep: { deeper: [1, 2, 3] } } },
  { $type: MOOD_NSID, constructor: 'x', toString: 'x', valueOf: 1 },
]

function record(shape: Record<string, unknown>, mood: unknown, when: unknown, ref: unknown): Record<string, unknown> {
  const r: Record<string, unknown> = {}
  for (const [k, v] of Object.entries({ ...shape, mood, when, ref })) if (v !== undefined) r[k] = v
  return r
}

/** The same answer from both, with `when` compared by instant. */
function comparable(result: MoodParse): unknown {
  return result.ok ? { ok: true, value: { ...result.value, when: result.value.when.getTime() } } : result
}

function expectSameVerdict(input: unknown): boolean {
  const fast = comparable(parseMood(input))
  const schema = comparable(parseMoodBySchema(input))
  // expect() only on a difference: 150,000 inputs, some of 5,000 characters.
  if (!isDeepStrictEqual(fast, schema)) expect(fast, show(input)).toEqual(schema)
  const common = typeof input === 'object' && input !== null ? commonMood(input) : undefined
  // The fast path never answers for a record the schema refuses.
  if (common !== undefined && !(schema as { ok: boolean }).ok) expect.fail(`fast path accepted what the schema refuses: ${show(input)}`)
  return common !== undefined
}

function show(input: unknown): string {
  try {
    return String(JSON.stringify(input)).slice(0, 300)
  } catch {
    return String(input)
  }
}

describe('parseMood fast path: the same verdicts as the schema', () => {
  it('takes the fast path for the common record (else it measures nothing)', () => {
    expect(commonMood({ $type: MOOD_NSID, ref: REF, mood: 'hi', when: WHEN })).toEqual({ mood: 'hi', when: new Date(WHEN), ref: REF })
    expect(commonMood(JSON.parse(JSON.stringify({ $type: MOOD_NSID, mood: 'hi', when: WHEN, ref: REF, extra: { a: [1] } })))).toBeDefined()
    expect(commonMood({ mood: 'hi', when: WHEN, ref: REF })).toBeDefined()
  })

  it('the lexicon corpus', () => {
    const entries = Object.values(CORPUS).flat()
    expect(entries.length).toBeGreaterThan(20)
    let fast = 0
    for (const entry of entries) {
      if (expectSameVerdict(entry.record)) fast++
      // And as the network sends it: through JSON.
      expectSameVerdict(JSON.parse(JSON.stringify(entry.record)))
    }
    expect(fast).toBeGreaterThan(0)
  })

  it('every combination of mood text, datetime, ref and shape', () => {
    let fast = 0
    let n = 0
    for (const shape of SHAPES) {
      for (const when of WHENS) {
        for (const mood of MOODS) {
          for (const ref of REFS) {
            n++
            if (expectSameVerdict(record(shape, mood, when, ref))) fast++
          }
        }
      }
    }
    expect(n).toBe(SHAPES.length * WHENS.length * MOODS.length * REFS.length)
    expect(fast).toBeGreaterThan(100)
  }, 60_000)

  it('random datetimes in the canonical layout (most name no real instant), and random real instants', () => {
    const random = mulberry32(0x5eed)
    const digits = (n: number) => Array.from({ length: n }, () => String(Math.floor(random() * 10))).join('')
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!
    let fast = 0
    for (let i = 0; i < 20_000; i++) {
      // Each part either any two digits or a plausible one, so that valid and near-valid both come up.
      const month = random() < 0.5 ? digits(2) : pick(['01', '02', '04', '06', '09', '11', '12'])
      const day = random() < 0.5 ? digits(2) : pick(['28', '29', '30', '31', '01'])
      const hour = random() < 0.5 ? digits(2) : pick(['00', '23', '24'])
      const year = random() < 0.3 ? digits(4) : pick(['2024', '2025', '1900', '2000', '0000', '0100', '9999'])
      const when = `${year}-${month}-${day}T${hour}:${digits(2)}:${digits(2)}.${digits(3)}${pick(['Z', 'Z', 'Z', 'z', '0'])}`
      if (expectSameVerdict({ $type: MOOD_NSID, mood: 'hi', when, ref: REF })) fast++
    }
    for (let i = 0; i < 5_000; i++) {
      const instant = new Date(Math.floor((random() * 2 - 0.5) * 253402300799999))
      const iso = instant.toISOString()
      for (const when of [iso, iso.replace(/\.\d{3}Z$/, 'Z'), iso.replace('Z', '+00:00')]) expectSameVerdict({ mood: 'hi', when, ref: REF })
    }
    expect(fast).toBeGreaterThan(300)
  }, 60_000)

  it('objects that are not plain, and hostile prototypes', () => {
    const base = { $type: MOOD_NSID, mood: 'hi', when: WHEN, ref: REF }
    class Record_ {
      $type = MOOD_NSID
      mood = 'hi'
      when = WHEN
      ref = REF
    }
    const inputs: unknown[] = [
      Object.assign(Object.create(null), base),
      new Record_(),
      Object.assign(Object.create(base), {}),
      Object.assign(Object.create({ polluted: true }), base),
      Object.assign([], base),
      Object.assign(new Map(), base),
      Object.assign(new Date(0), base),
      { ...base, [Symbol.toStringTag]: 'Mood' },
      JSON.parse(`{"__proto__": {"x": 1}, "$type": "${MOOD_NSID}", "mood": "hi", "when": "${WHEN}", "ref": "${REF}"}`),
      JSON.parse(`{"$type": "${MOOD_NSID}", "mood": "hi", "when": "${WHEN}", "ref": "${REF}", "mood": 7}`),
      'a string',
      42,
      null,
      undefined,
      [base],
    ]
    for (const input of inputs) expectSameVerdict(input)
  })
})
