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
