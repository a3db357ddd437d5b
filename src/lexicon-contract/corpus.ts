/**
 * Records run through both schemas by `moodsync lexicon check`: valid ones, invalid ones, and
 * every legacy shape found in the platform's repos. A record one schema accepts and the other
 * refuses fails the check, unless lexicons-published/deviations.json lists that difference.
 * `published` says what the pinned published schema answers (the unit tests hold the corpus
 * to it, so an entry cannot silently stop testing what its name says).
 */

export type Verdict = 'valid' | 'invalid'

export interface CorpusEntry {
  /** Unique within its NSID; deviations name entries by it. */
  name: string
  note: string
  record: Record<string, unknown>
  published: Verdict
}

const MOOD = 'computer.aesthetic.mood'
const WHEN = '2025-03-01T12:00:00.000Z'
const REF = '65f0c0ffee0123456789abcd'

const mood = (fields: Record<string, unknown>): Record<string, unknown> => ({ $type: MOOD, ...fields })
const bytes = (s: string): number => Buffer.byteLength(s, 'utf8')
/** A string of exactly `n` UTF-8 bytes: `unit` repeated, padded with ASCII. */
const ofBytes = (unit: string, n: number): string => {
  const repeats = Math.floor(n / bytes(unit))
  return unit.repeat(repeats) + 'a'.repeat(n - repeats * bytes(unit))
}

const EMOJI = '\u{1F600}' // 4 UTF-8 bytes, 2 UTF-16 units
const EURO = '\u20AC' // 3 UTF-8 bytes
const E_ACUTE = '\u00E9' // 2 UTF-8 bytes

export const CORPUS: Record<string, CorpusEntry[]> = {
  [MOOD]: [
    { name: 'plain', note: 'a mood as the platform writes it', record: mood({ mood: 'feeling fine', when: WHEN, ref: REF }), published: 'valid' },
    { name: 'without-type', note: 'no $type (a value, not yet a record)', record: { mood: 'hi', when: WHEN, ref: REF }, published: 'valid' },
    { name: 'empty-mood', note: 'an empty text (no minLength)', record: mood({ mood: '', when: WHEN, ref: REF }), published: 'valid' },
    { name: 'unknown-fields', note: 'extra fields a schema does not name are allowed', record: mood({ mood: 'hi', when: WHEN, ref: REF, app: 'aesthetic.computer', meta: { v: 2 } }), published: 'valid' },
    { name: 'ref-and-mongoId', note: 'both the id field and the legacy one', record: mood({ mood: 'hi', when: WHEN, ref: REF, mongoId: REF }), published: 'valid' },
    { name: 'legacy-mongoId-not-a-string', note: 'a mongoId beside ref that is not a string: an unknown field for the published schema', record: mood({ mood: 'hi', when: WHEN, ref: REF, mongoId: 42 }), published: 'valid' },
    { name: 'legacy-mongoId-instead-of-ref', note: 'about 222 early records carry the MongoDB id as mongoId, without ref', record: mood({ mood: 'early days', when: WHEN, mongoId: REF }), published: 'invalid' },
    { name: 'legacy-text-instead-of-mood', note: 'records a restore script wrote with text in place of mood', record: mood({ text: 'restored', when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'legacy-neither-ref-nor-mongoId', note: 'no id of the MongoDB document at all', record: mood({ mood: 'orphan', when: WHEN }), published: 'invalid' },
    { name: 'legacy-impossible-date', note: 'when on February 30th: the lexicon validator takes any date Date.parse takes', record: mood({ mood: 'hi', when: '2025-02-30T12:00:00Z', ref: REF }), published: 'valid' },
    { name: 'when-not-a-datetime', note: 'when is free text', record: mood({ mood: 'hi', when: 'yesterday', ref: REF }), published: 'invalid' },
    { name: 'when-missing', note: 'no when', record: mood({ mood: 'hi', ref: REF }), published: 'invalid' },
    { name: 'mood-not-a-string', note: 'mood is a number', record: mood({ mood: 42, when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'ref-not-a-string', note: 'ref is an object', record: mood({ mood: 'hi', when: WHEN, ref: { $oid: REF } }), published: 'invalid' },
    { name: 'ascii-5000-bytes', note: 'exactly the bound', record: mood({ mood: ofBytes('a', 5000), when: WHEN, ref: REF }), published: 'valid' },
    { name: 'ascii-5001-bytes', note: 'one byte over', record: mood({ mood: ofBytes('a', 5001), when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'emoji-5000-bytes', note: '1,250 four-byte emoji: 2,500 UTF-16 units, exactly 5,000 bytes', record: mood({ mood: EMOJI.repeat(1250), when: WHEN, ref: REF }), published: 'valid' },
    { name: 'emoji-5001-bytes', note: '1,250 emoji and one ASCII letter', record: mood({ mood: EMOJI.repeat(1250) + 'a', when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'emoji-5200-bytes', note: '1,300 emoji: 2,600 UTF-16 units, under 5,000 characters yet 5,200 bytes', record: mood({ mood: EMOJI.repeat(1300), when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'three-byte-5000-bytes', note: '1,666 euro signs and two letters', record: mood({ mood: ofBytes(EURO, 5000), when: WHEN, ref: REF }), published: 'valid' },
    { name: 'three-byte-5001-bytes', note: '1,667 euro signs', record: mood({ mood: EURO.repeat(1667), when: WHEN, ref: REF }), published: 'invalid' },
    { name: 'two-byte-5000-bytes', note: '2,500 accented letters', record: mood({ mood: E_ACUTE.repeat(2500), when: WHEN, ref: REF }), published: 'valid' },
    { name: 'mixed-5000-bytes', note: '1,249 emoji, one two-byte letter, two ASCII: the bound across widths', record: mood({ mood: EMOJI.repeat(1249) + E_ACUTE + 'ab', when: WHEN, ref: REF }), published: 'valid' },
    { name: 'mixed-5001-bytes', note: '1,249 emoji, one three-byte sign, two ASCII', record: mood({ mood: EMOJI.repeat(1249) + EURO + 'ab', when: WHEN, ref: REF }), published: 'invalid' },
  ],
}
