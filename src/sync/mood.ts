import * as lexMood from '../lexicon/computer/aesthetic/mood.defs.ts'
import { COLLECTIONS, type MoodFields } from '../store/collections.ts'
import type { CollectionDefinition, Parsed } from './collection.ts'

export const MOOD_NSID = lexMood.$nsid

/** A mood as moodsync stores it: what the platform needs, nothing a client added beside it. */
export interface Mood {
  mood: string
  when: Date
  /** The MongoDB document id this mood came from (required by the published schema; another client puts what it likes). */
  ref: string
}

export type MoodParse = Parsed<Mood>

/** The published schema's bound on `mood`: Lexicon's maxLength counts UTF-8 bytes. */
export const MOOD_MAX_BYTES = 5000

/**
 * Why a record is refused, for counts (`status`) and the quarantine entry: `legacy-text` (an old
 * platform script's `text` instead of `mood`; `moodsync normalize` rewrites it), `no-ref` (neither
 * `ref` nor the legacy `mongoId`), `oversize` (a mood over 5,000 bytes), `invalid` (anything else).
 */
export const MOOD_REFUSALS = ['legacy-text', 'no-ref', 'oversize', 'invalid'] as const
export type MoodRefusal = (typeof MOOD_REFUSALS)[number]

/**
 * Takes any value from the network and returns a valid mood or the reason it is not one.
 * The lexicon's generated validator does the checks (bytes, datetime with timezone, types); this
 * adds what the lexicon cannot say: legacy `mongoId` read as `ref`, the legacy shapes named in
 * the reason, a `when` that names no calendar day (`2025-02-30`), and a record without `$type`
 * accepted because the collection already names its type.
 */
export function parseMood(input: unknown): MoodParse {
  const common = typeof input === 'object' && input !== null ? commonMood(input) : undefined
  if (common !== undefined) return { ok: true, value: common }
  return parseMoodBySchema(input)
}

/** A mood's text this short (UTF-16 units) is within 5,000 UTF-8 bytes whatever it holds (3 bytes a unit at most). */
const COMMON_MOOD_UNITS = Math.floor(MOOD_MAX_BYTES / 3)
const objectToString = Object.prototype.toString

/**
 * The common record, accepted without running the schema: a plain object with `$type` the
 * mood NSID or absent, a string `mood` of at most 1,666 UTF-16 units, a string `ref`, no
 * `mongoId`, and `when` in the layout `Date.prototype.toISOString` writes
 * (`YYYY-MM-DDTHH:mm:ss.sssZ`, year 0100-9999). Anything else returns undefined, and
 * `parseMoodBySchema` decides. It only ever accepts, never refuses, and accepts only what
 * `parseMoodBySchema` accepts, with the same value:
 * - the schema's object check is lex-data's `isPlainObject`; a prototype of `Object.prototype`
 *   and a tag of `[object Object]` pass it. Fields the schema does not name it never reads.
 * - `mood` of at most 1,666 units is at most 4,998 UTF-8 bytes (`oversize` and `maxLength`).
 * - `when` (see `canonicalInstant`) matches `@atproto/syntax`'s datetime pattern, is not
 *   `-00:00`, is under 64 characters, parses to a year of 0-9999, and names a real calendar
 *   day and time (`impossibleDate`); its instant is what `new Date(when)` gives.
 * test/unit/mood-fast-path.test.ts runs the lexicon corpus and generated edge cases through
 * both and requires the same verdicts.
 */
export function commonMood(record: object): Mood | undefined {
  if (Object.getPrototypeOf(record) !== Object.prototype) return undefined
  const r = record as Record<string, unknown>
  const { mood, when, ref } = r
  if (typeof mood !== 'string' || typeof when !== 'string' || typeof ref !== 'string' || mood.length > COMMON_MOOD_UNITS) return undefined
  if ((r.$type !== MOOD_NSID && r.$type !== undefined) || r.mongoId !== undefined) return undefined
  if (objectToString.call(record) !== '[object Object]') return undefined
  const time = canonicalInstant(when)
  return time === time ? { mood, when: new Date(time), ref } : undefined
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** Two ASCII digits at `i` as a number, or -1. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48
  const b = s.charCodeAt(i + 1) - 48
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1
}

/**
 * The instant (ms) of `YYYY-MM-DDTHH:mm:ss.sssZ` naming a real day of a year 0100-9999 and a
 * time 00:00:00.000-23:59:59.999, or NaN for anything else (left to the schema path). Years
 * 0000-0099 are left to it too: its `impossibleDate` probes the day in 19xx, so it refuses
 * 29 February of years like 0000 and 0004, which `Date` takes (a quirk kept as it is).
 */
function canonicalInstant(s: string): number {
  if (s.length !== 24 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58 || s.charCodeAt(19) !== 46 || s.charCodeAt(23) !== 90) return Number.NaN
  const century = twoDigits(s, 0)
  const yy = twoDigits(s, 2)
  const month = twoDigits(s, 5)
  const day = twoDigits(s, 8)
  const hour = twoDigits(s, 11)
  const minute = twoDigits(s, 14)
  const second = twoDigits(s, 17)
  const ms10 = twoDigits(s, 20)
  const ms1 = s.charCodeAt(22) - 48
  if (century < 1 || yy < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms10 < 0 || !(ms1 >= 0 && ms1 <= 9)) return Number.NaN
  const year = century * 100 + yy
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!)) return Number.NaN
  return Date.UTC(year, month - 1, day, hour, minute, second, ms10 * 10 + ms1)
}

/**
 * `parseMood` without the fast path for the common record: every record through the
 * generated schema, with the reasons. Exported for the test that holds the two to the same verdicts.
 */
export function parseMoodBySchema(input: unknown): MoodParse {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return refuse('invalid', `record must be an object (got ${describe(input)})`)
  }
  const record = input as Record<string, unknown>
  if (record.$type !== undefined && record.$type !== MOOD_NSID) {
    return refuse('invalid', `$type must be ${MOOD_NSID} (got ${describe(record.$type)})`)
  }
  const legacyRef = record.ref === undefined && record.mongoId !== undefined
  if (record.mood === undefined && typeof record.text === 'string') {
    const named = record.ref !== undefined || record.mongoId !== undefined
    return refuse('legacy-text', named ? "legacy record: 'text' instead of 'mood' (moodsync normalize rewrites it)" : "legacy record: 'text' instead of 'mood', and no ref or legacy mongoId (it names no mood: moodsync normalize leaves it)")
  }
  if (record.ref === undefined && record.mongoId === undefined) return refuse('no-ref', 'ref is missing (and no legacy mongoId)')
  if (typeof record.mood === 'string') {
    const tooLong = oversize(record.mood)
    if (tooLong) return refuse('oversize', tooLong)
  }
  const candidate: Record<string, unknown> = { ...record, $type: MOOD_NSID }
  // Older records carry the MongoDB id under `mongoId`; validate it by the rules of `ref`.
  if (legacyRef) candidate.ref = record.mongoId
  // Validate, not parse: parse builds (and drops) an error object for every absent optional field.
  const result = lexMood.$safeValidate(candidate)
  if (!result.success) return refuse('invalid', result.message.replace(/\$\.ref\b/, legacyRef ? '$.mongoId' : '$.ref'))
  const impossible = impossibleDate(result.value.when)
  if (impossible) return refuse('invalid', impossible)
  const when = new Date(result.value.when)
  if (Number.isNaN(when.getTime())) return refuse('invalid', `when is not a representable date (got ${JSON.stringify(result.value.when)})`)
  return { ok: true, value: { mood: result.value.mood, when, ref: result.value.ref } }
}

/** Whether a record reads its ref from the legacy `mongoId` (valid, but `moodsync normalize` rewrites it with `ref`). */
export function isLegacyMongoId(record: unknown): boolean {
  return typeof record === 'object' && record !== null && (record as Record<string, unknown>).ref === undefined && (record as Record<string, unknown>).mongoId !== undefined
}

/** The byte count and limit, when a mood's text is over the published bound; else undefined. */
export function oversize(text: string): string | undefined {
  const bytes = Buffer.byteLength(text, 'utf8')
  return bytes > MOOD_MAX_BYTES ? `mood is ${bytes.toLocaleString('en-US')} bytes, over the published limit of ${MOOD_MAX_BYTES.toLocaleString('en-US')} bytes` : undefined
}

function refuse(kind: MoodRefusal, reason: string): MoodParse {
  return { ok: false, kind, reason }
}

const DATE_PART = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/

/**
 * `Date` rolls an impossible day over (`2025-02-30` becomes 2 March) where a datetime validator
 * may accept it: the date part must name a real calendar day, the time a real time of day.
 */
function impossibleDate(value: string): string | undefined {
  const m = DATE_PART.exec(value)
  if (!m) return undefined
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number]
  const probe = new Date(Date.UTC(year, month - 1, day))
  probe.setUTCFullYear(year) // years 0-99 are taken as 19xx by Date.UTC
  const dayOk = month >= 1 && month <= 12 && probe.getUTCFullYear() === year && probe.getUTCMonth() === month - 1 && probe.getUTCDate() === day
  if (!dayOk) return `when names no calendar day: ${m[1]}-${m[2]}-${m[3]} does not exist (got ${JSON.stringify(value)})`
  if (hour > 23 || minute > 59 || second > 59) return `when names no time of day: ${m[4]}:${m[5]}:${m[6]} (got ${JSON.stringify(value)})`
  return undefined
}

/** The record the writer sends: `ref`, never `mongoId`, and `when` with a timezone. */
export function toRecord(mood: Mood): lexMood.Main {
  return { $type: MOOD_NSID, mood: mood.mood, when: mood.when.toISOString() as lexMood.Main['when'], ref: mood.ref }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  return typeof value
}

/** `computer.aesthetic.mood` as the pipeline sees it: the first collection moodsync indexes. */
export const moodCollection: CollectionDefinition<Mood, MoodFields> = {
  nsid: MOOD_NSID,
  mongoCollection: COLLECTIONS.moods,
  parse: parseMood,
  fields: (mood) => ({ mood: mood.mood, when: mood.when }),
  ref: (mood) => mood.ref,
}
