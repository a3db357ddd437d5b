import { cidForLex } from '@atproto/lex-cbor'
import { MoodsyncError } from '../errors.ts'
import type { MoodDoc } from '../store/collections.ts'
import { parseMood, toRecord, type Mood } from '../sync/mood.ts'

/** The lexicon refuses the mood; `kind` says how (`oversize`: over 5,000 UTF-8 bytes; `invalid`). */
export class InvalidMoodError extends MoodsyncError {
  override name = 'InvalidMoodError'
  readonly kind: string
  constructor(message: string, kind = 'invalid') {
    super(message)
    this.kind = kind
  }
}
export class StaleEditError extends MoodsyncError {
  override name = 'StaleEditError'
}
export class NotFoundError extends MoodsyncError {
  override name = 'NotFoundError'
}

/** The record a document stands for: its text and time, and its own id as `ref`. */
export function recordOf(doc: MoodDoc) {
  return toRecord({ mood: doc.mood, when: doc.when, ref: doc._id.toHexString() })
}

/**
 * The writer writes only what the published schema accepts: the record it will send is checked
 * (a mood over 5,000 UTF-8 bytes is refused with its size and the limit).
 */
export function validate(mood: Mood): Mood {
  const parsed = parseMood(toRecord(mood))
  if (!parsed.ok) throw new InvalidMoodError(parsed.reason, parsed.kind)
  return parsed.value
}

/** The CID the PDS will give the record: the writer knows it before writing, the echo matches it. */
export async function recordCid(mood: Mood): Promise<string> {
  return (await cidForLex(toRecord(mood) as never)).toString()
}

/** applyWrites takes at most 200 writes and a body under 1,000,000 bytes. */
export const MAX_WRITES = 200
const MAX_BODY = 900_000

/** applyWrites batches of first writes: at most 200, and a JSON body safely under the 1 MB cap. */
export function* applyWritesChunks(docs: MoodDoc[]): Generator<MoodDoc[]> {
  let chunk: MoodDoc[] = []
  let bytes = 0
  for (const doc of docs) {
    const size = Buffer.byteLength(JSON.stringify(recordOf(doc))) + 200
    if (chunk.length > 0 && (chunk.length >= MAX_WRITES || bytes + size > MAX_BODY)) {
      yield chunk
      chunk = []
      bytes = 0
    }
    chunk.push(doc)
    bytes += size
  }
  if (chunk.length > 0) yield chunk
}
