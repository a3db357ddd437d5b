import { isTid, parseMood } from '../mood.ts'
import type { MoodOp } from '../store/moods.ts'
import type { QuarantineEntry } from '../store/quarantine.ts'
import { truncate, type CommitEvent } from './events.ts'

/**
 * A commit's ops, checked as the lexicon demands (TID record key, a valid mood) and turned into
 * store ops; what fails becomes a quarantine entry that says why and how to find the record.
 */
export function commitToOps(event: Pick<CommitEvent, 'did' | 'rev' | 'ops'> & { cursor?: number }, user: string | null, source: string): { ops: MoodOp[]; rejected: QuarantineEntry[] } {
  const ops: MoodOp[] = []
  const rejected: QuarantineEntry[] = []
  for (const op of event.ops) {
    const where = { source, did: event.did, rkey: op.rkey, ...(event.cursor === undefined ? {} : { cursor: event.cursor }) }
    if (!isTid(op.rkey)) {
      rejected.push({ ...where, reason: `record key ${JSON.stringify(op.rkey)} is not a TID (lexicon key: tid)`, ...(op.action === 'upsert' ? { cid: op.cid, raw: rawOf(op.record) } : {}) })
      continue
    }
    if (op.action === 'delete') {
      ops.push({ kind: 'delete', did: event.did, rkey: op.rkey, rev: event.rev })
      continue
    }
    const parsed = parseMood(op.record)
    if (!parsed.ok) {
      rejected.push({ ...where, reason: parsed.reason, cid: op.cid, raw: rawOf(op.record) })
      continue
    }
    ops.push({ kind: 'upsert', did: event.did, rkey: op.rkey, rev: event.rev, cid: op.cid, mood: parsed.value, user })
  }
  return { ops, rejected }
}

function rawOf(record: unknown): string | undefined {
  try {
    const text = JSON.stringify(record)
    return text === undefined ? undefined : truncate(text)
  } catch {
    return undefined
  }
}
