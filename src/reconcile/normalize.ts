import { PdsError } from '../atproto/xrpc.ts'
import { InactiveAccountError, NoCredentialsError } from '../errors.ts'
import { addApplyResult, emptyApplyResult, type ApplyResult, type UpsertOp } from '../store/ops.ts'
import type { Subject } from '../store/users.ts'
import { MOOD_NSID, moodCollection, parseMood } from '../sync/mood.ts'
import { emptyCoverage, type Coverage } from './coverage.ts'
import { forEachSubject, type SubjectRunOptions } from './each-subject.ts'
import { inspect, type ReconcileContext } from './inspect.ts'

/** The legacy shapes normalize rewrites: `mongoId` instead of `ref`, `text` instead of `mood`. */
export type LegacyShape = 'mongoId' | 'text' | 'mongoId+text'

/** A record normalize rewrote (or, in a dry run, would rewrite). */
export interface NormalizedRecord {
  user: string
  did: string
  rkey: string
  legacy: LegacyShape
  /** The CID it had. */
  from: string
  /** The CID it has now (absent in a dry run). */
  to?: string
}

/** A record normalize leaves as it is, and why. */
export interface LeftRecord {
  user: string | null
  did: string
  rkey: string
  reason: string
}

/** What normalize rewrote and left in the repos it handled, and how far it got (`Coverage`). */
export interface NormalizeReport extends Coverage {
  dryRun: boolean
  /** Records rewritten valid (in a dry run: to rewrite). */
  rewritten: number
  changes: NormalizedRecord[]
  /** Invalid records that are not only legacy (no ref, oversize, anything else): left, listed. */
  left: LeftRecord[]
  /** Legacy records the PDS would not take (changed since they were read, refused): listed; exit 1. */
  failed: LeftRecord[]
  /** MongoDB brought to the rewritten records (their CID and rev; quarantined ones attached by their ref). */
  applied: ApplyResult
}

/**
 * The record a legacy one becomes: `ref` for `mongoId`, `mood` for `text`, the rest as it was;
 * undefined when the record is not legacy in one of these ways. Valid or not is for `parseMood` to say.
 */
export function normalizedRecord(value: unknown): { record: Record<string, unknown>; legacy: LegacyShape } | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const { mongoId, text, ...rest } = value as Record<string, unknown>
  const refLegacy = rest.ref === undefined && typeof mongoId === 'string'
  const textLegacy = rest.mood === undefined && typeof text === 'string'
  if (!refLegacy && !textLegacy) return undefined
  const record: Record<string, unknown> = { ...rest, $type: MOOD_NSID }
  // A field the record keeps beside the legacy one (a `text` next to a `mood`) is not ours to drop.
  if (refLegacy) record.ref = mongoId
  else if (mongoId !== undefined) record.mongoId = mongoId
  if (textLegacy) record.mood = text
  else if (text !== undefined) record.text = text
  return { record, legacy: refLegacy && textLegacy ? 'mongoId+text' : refLegacy ? 'mongoId' : 'text' }
}

/**
 * Rewrites the records of platform users' repos that are invalid (or legacy) only in a legacy
 * way, `mongoId` instead of `ref` and `text` instead of `mood`: `putRecord` under the same rkey,
 * swapped on the CID read, within the account's budget; then MongoDB takes the new record (its
 * CID and rev; a record that was quarantined attaches to the mood its ref names, same user only)
 * through the indexer's apply path. Every other invalid record is left and listed. Idempotent:
 * a second run finds nothing legacy.
 */
export async function normalize(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions & { dryRun?: boolean } = {}): Promise<NormalizeReport> {
  const dryRun = opts.dryRun ?? false
  const users = subjects.filter((s): s is Subject & { user: string; did: string } => s.user !== null && s.did !== null)
  const report: NormalizeReport = { ...emptyCoverage(users.length), dryRun, rewritten: 0, changes: [], left: [], failed: [], applied: emptyApplyResult() }
  // Repos run concurrently: each count is awaited into a local before it is added (see forEachSubject).
  await forEachSubject(ctx, dryRun ? 'normalize plan' : 'normalize', users, opts, report, async (subject) => {
    const { user, did } = subject as { user: string; did: string }
    const { snapshot, records, rejected, inactive } = await inspect(ctx, subject)
    if (inactive) throw new InactiveAccountError(`${did}: the account is ${inactive}; its records wait until it is active`)
    if (!snapshot) return 0
    // The records inspect considered (erased ones are not), valid or not.
    const considered = new Set([...records.map((op) => op.rkey), ...(rejected ?? []).map((e) => e.rkey)])
    const reasons = new Map((rejected ?? []).map((e) => [e.rkey, e.reason]))
    const ops: UpsertOp[] = []
    for (const entry of snapshot.records) {
      if (!considered.has(entry.rkey)) continue
      const fixed = normalizedRecord(entry.value)
      if (!fixed) {
        const reason = reasons.get(entry.rkey)
        if (reason !== undefined) report.left.push({ user, did, rkey: entry.rkey, reason })
        continue
      }
      const parsed = parseMood(fixed.record)
      if (!parsed.ok) {
        report.left.push({ user, did, rkey: entry.rkey, reason: `legacy (${fixed.legacy}), and still invalid once rewritten: ${parsed.reason}` })
        continue
      }
      const change: NormalizedRecord = { user, did, rkey: entry.rkey, legacy: fixed.legacy, from: entry.cid }
      if (dryRun) {
        report.changes.push(change)
        report.rewritten++
        continue
      }
      if (!ctx.writer) throw new NoCredentialsError('normalize needs the writer (PDS_URL and credentials) to rewrite records')
      let written: { cid: string; rev?: string }
      try {
        written = await ctx.writer.rewriteRecord({ user, did, rkey: entry.rkey, record: fixed.record, swapCid: entry.cid })
      } catch (err) {
        // Only a refusal of this one record is its own; a PDS away or a budget spent stops the repo (unchecked).
        if (!(err instanceof PdsError) || err.status === 0 || err.status === 429 || err.status >= 500 || err.status === 401) throw err
        const why = err.error === 'InvalidSwap' ? 'the record changed since it was read; run normalize again' : err.message
        report.failed.push({ user, did, rkey: entry.rkey, reason: why })
        continue
      }
      report.changes.push({ ...change, to: written.cid })
      report.rewritten++
      const rev = written.rev ?? (await ctx.reader.latestRev(did))
      const op: UpsertOp = { kind: 'upsert', did, rkey: entry.rkey, rev, cid: written.cid, fields: moodCollection.fields(parsed.value), user, ref: parsed.value.ref }
      ops.push(op)
    }
    if (ops.length > 0) {
      const applied = await ctx.store.moods.apply(ops)
      addApplyResult(report.applied, applied)
    }
    return snapshot.records.length
  })
  const order = (a: { user: string | null; rkey: string }, b: { user: string | null; rkey: string }) => (a.user ?? '').localeCompare(b.user ?? '') || a.rkey.localeCompare(b.rkey)
  report.changes.sort(order)
  report.left.sort(order)
  report.failed.sort(order)
  return report
}
