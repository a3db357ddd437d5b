import type { ApplyResult, MoodOp } from '../store/ops.ts'
import type { FlushResult } from '../writer/writer.ts'
import { countsOf, type SubjectDiff } from './compare.ts'
import { emptyCoverage, type Coverage } from './coverage.ts'
import { forEachSubject, type SubjectRunOptions } from './each-subject.ts'
import { inspect, type Inspection, type ReconcileContext } from './inspect.ts'
import { addApplyResult, emptyApplyResult } from '../store/ops.ts'
import { confirmWritten, flushOutbox } from './settle.ts'
import type { Subject } from '../store/users.ts'

/** What repair does, by action. */
export interface RepairPlan {
  /** Records MongoDB lacks or has deleted: restored from ATProto. */
  restore: number
  /** Moods that say something else than their record: take the record's. */
  update: number
  /** Live moods whose record is gone: marked deleted. */
  markDeleted: number
  /** Moods that never had a record: pushed through the outbox. */
  push: number
  /** Outbox entries pending or failed: tried again now. */
  retry: number
  /** Moods in sync whose bookkeeping is incomplete (written, or no CID recorded): completed. */
  confirm: number
  /** Duplicate records: left for `moodsync dedupe --delete`. */
  duplicates: number
}

/** What repair planned and did in the subjects it handled, and how far it got (`Coverage`). */
export interface RepairReport extends Coverage {
  dryRun: boolean
  plan: RepairPlan
  /** Subjects with something to do, and what. */
  subjects: (Subject & { plan: RepairPlan })[]
  done: { applied: ApplyResult; queued: number; invalid: number; flushed: FlushResult; confirmed: number }
}

export function emptyPlan(): RepairPlan {
  return { restore: 0, update: 0, markDeleted: 0, push: 0, retry: 0, confirm: 0, duplicates: 0 }
}

/**
 * The ops that settle a subject from its records: restores, updates, confirmations, and the
 * deletes of live moods (or written ones) whose record is gone. Outbox entries still pending
 * are the writer's: they are retried, never overwritten.
 */
export function repairOps(inspection: Inspection): { ops: MoodOp[]; plan: RepairPlan } {
  const { diff, snapshot } = inspection
  const plan = planOf(diff)
  // An inactive account's visible moods are hidden (fix), not deleted: they return with it.
  if (!snapshot) return { ops: [], plan }
  const byRkey = new Map(inspection.records.map((op) => [op.rkey, op]))
  const ops: MoodOp[] = [...diff.atprotoOnly, ...diff.differs, ...diff.confirmable, ...diff.unrecorded]
  const deleteOf = (rkey: string): MoodOp => ({ kind: 'delete', did: snapshot.did, rkey, rev: snapshot.rev })
  for (const doc of diff.mongoOnly) ops.push(deleteOf(doc.atproto!.rkey!))
  // Written but not as we wrote it: the record was changed or deleted since, and ATProto wins.
  for (const doc of diff.unconfirmed) {
    if (doc.atproto?.state !== 'written' || doc.atproto.rkey === undefined) continue
    const record = byRkey.get(doc.atproto.rkey)
    ops.push(record ?? deleteOf(doc.atproto.rkey))
    if (record) plan.update++
    else plan.markDeleted++
    plan.retry--
  }
  return { ops, plan }
}

function planOf(diff: SubjectDiff): RepairPlan {
  return {
    restore: diff.atprotoOnly.length,
    update: diff.differs.length,
    markDeleted: diff.mongoOnly.length,
    push: diff.unmigrated.length,
    retry: diff.unconfirmed.length,
    confirm: diff.confirmable.length + diff.unrecorded.length,
    duplicates: countsOf(diff).duplicates,
  }
}

function hasWork(plan: RepairPlan): boolean {
  return plan.restore + plan.update + plan.markDeleted + plan.push + plan.retry + plan.confirm > 0
}

/**
 * Fixes what `status` finds, each kind in its direction: ATProto is the truth for what exists
 * and what it says; moods that never reached ATProto go out through the writer's outbox.
 * Duplicates are left to `dedupe`, which deletes records only when told to.
 */
export async function repair(ctx: ReconcileContext, subjects: readonly Subject[], opts: SubjectRunOptions & { dryRun?: boolean } = {}): Promise<RepairReport> {
  const dryRun = opts.dryRun ?? false
  const report: RepairReport = { ...emptyCoverage(subjects.length), dryRun, plan: emptyPlan(), subjects: [], done: { applied: emptyApplyResult(), queued: 0, invalid: 0, flushed: { written: 0, deferred: 0, failed: 0, retried: 0 }, confirmed: 0 } }
  await forEachSubject(ctx, dryRun ? 'repair plan' : 'repair', subjects, opts, report, async (subject) => {
    const inspection = await inspect(ctx, subject)
    const { ops, plan } = repairOps(inspection)
    for (const key of Object.keys(plan) as (keyof RepairPlan)[]) report.plan[key] += plan[key]
    if (hasWork(plan) || plan.duplicates > 0) report.subjects.push({ ...subject, plan })
    if (!dryRun && hasWork(plan)) await fix(ctx, inspection, ops, report)
    return inspection.records.length
  })
  report.subjects.sort((a, b) => (a.user ?? a.did ?? '').localeCompare(b.user ?? b.did ?? ''))
  return report
}

/**
 * Subjects are fixed concurrently: every count is awaited into a local before it is added to
 * the report (`report.x += await ...` would add to a value read before the await).
 */
async function fix(ctx: ReconcileContext, inspection: Inspection, ops: MoodOp[], report: RepairReport): Promise<void> {
  const { subject, diff, snapshot } = inspection
  const moods = ctx.store.moods
  if (inspection.inactive !== undefined) {
    const hidden = await moods.hideDid(subject.did!, inspection.inactive)
    report.done.applied.deleted += hidden
    return
  }
  if (snapshot) await moods.restoreDid(snapshot.did)
  if (ops.length > 0) {
    const applied = await moods.apply(ops)
    addApplyResult(report.done.applied, applied)
  }
  const writer = ctx.writer
  if (!writer || subject.user === null) return
  const retry = diff.unconfirmed.filter((doc) => doc.atproto?.state === 'pending' || doc.atproto?.state === 'failed')
  await writer.requeue(retry.map((doc) => doc._id))
  const adopted = await writer.adopt(diff.unmigrated)
  report.done.queued += adopted.queued
  report.done.invalid += adopted.invalid
  if (retry.length === 0 && adopted.queued === 0) return
  const flushed = await flushOutbox(writer, subject.user)
  for (const key of Object.keys(flushed) as (keyof FlushResult)[]) report.done.flushed[key] += flushed[key]
  const confirmed = await confirmWritten(ctx, subject)
  report.done.confirmed += confirmed
}
