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

/**
 * Takes any value from the network and returns a valid mood or the reason it is not one.
 * The lexicon's generated validator does the checks (graphemes, bytes, datetime with timezone,
 * types); this adds what the lexicon cannot say: legacy `mongoId` read as `ref`, and a
 * record without `$type` accepted because the collection already names its type.
 */
export function parseMood(input: unknown): MoodParse {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { ok: false, reason: `record must be an object (got ${describe(input)})` }
  }
  const record = input as Record<string, unknown>
  if (record.$type !== undefined && record.$type !== MOOD_NSID) {
    return { ok: false, reason: `$type must be ${MOOD_NSID} (got ${describe(record.$type)})` }
  }
  const candidate: Record<string, unknown> = { ...record, $type: MOOD_NSID }
  if (candidate.ref === undefined && record.mongoId !== undefined) {
    // Older records carry the MongoDB id under `mongoId`; validate it by the rules of `ref`.
    candidate.ref = record.mongoId
  }
  // Validate, not parse: parse builds (and drops) an error object for every absent optional field.
  const result = lexMood.$safeValidate(candidate)
  if (!result.success) {
    return { ok: false, reason: result.message.replace(/\$\.ref\b/, record.ref === undefined && record.mongoId !== undefined ? '$.mongoId' : '$.ref') }
  }
  const when = new Date(result.value.when)
  if (Number.isNaN(when.getTime())) {
    return { ok: false, reason: `when is not a representable date (got ${JSON.stringify(result.value.when)})` }
  }
  return { ok: true, value: { mood: result.value.mood, when, ref: result.value.ref } }
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
