import { TID } from '@atproto/common-web'
import type { RepoSnapshot } from '../atproto/repo-reader.ts'
import type { RecordOp, UpsertOp } from '../store/ops.ts'
import type { QuarantineEntry } from '../store/quarantine.ts'
import type { CollectionDefinition, RecordDelete, RecordWrite, RepoCommit } from './collection.ts'

/** Where an op came from, for its quarantine entry. */
export interface OpOrigin {
  source: string
  did: string
  rev: string
  cursor?: number
}

/**
 * One record op, checked as its lexicon demands (a TID record key, a value the definition
 * accepts) and turned into a store op; what fails becomes a quarantine entry that says why and
 * how to find the record. Deletes carry no record: only their key is checked.
 */
export function toStoreOp<V, F extends object>(def: CollectionDefinition<V, F>, op: RecordWrite | RecordDelete, user: string | null, origin: OpOrigin): RecordOp<F> | QuarantineEntry {
  if (!isTid(op.rkey)) {
    return { ...where(origin, op.rkey), reason: `record key ${JSON.stringify(op.rkey)} is not a TID (lexicon key: tid)`, ...(op.action === 'upsert' ? { cid: op.cid, raw: rawOf(op.record) } : {}) }
  }
  if (op.action === 'delete') return { kind: 'delete', did: origin.did, rkey: op.rkey, rev: origin.rev }
  // Before anything recursive (validation, its error messages, JSON.stringify) sees the value.
  const shape = shapeProblem(op.record)
  if (shape) return { ...where(origin, op.rkey), reason: shape, cid: op.cid }
  try {
    const parsed = def.parse(op.record)
    if (!parsed.ok) return { ...where(origin, op.rkey), reason: parsed.reason, ...(parsed.kind === undefined ? {} : { refusal: parsed.kind }), cid: op.cid, raw: rawOf(op.record) }
    const fields = def.fields(parsed.value)
    const ref = def.ref?.(parsed.value)
    // Built whole, with or without `ref`: adding it afterwards changed the object's shape per op.
    return ref === undefined
      ? { kind: 'upsert', did: origin.did, rkey: op.rkey, rev: origin.rev, cid: op.cid, fields, user }
      : { kind: 'upsert', did: origin.did, rkey: op.rkey, rev: origin.rev, cid: op.cid, fields, user, ref }
  } catch (err) {
    // A definition must not throw; if one does, the record is set aside, not the stream.
    return { ...where(origin, op.rkey), reason: `could not be validated: ${(err as Error).message}`, cid: op.cid, raw: rawOf(op.record) }
  }
}

export function isStoreOp<F extends object>(value: RecordOp<F> | QuarantineEntry): value is RecordOp<F> {
  return 'kind' in value
}

/** A commit's ops of one collection as store ops, and the rejected ones as quarantine entries. */
export function commitToOps<V, F extends object>(def: CollectionDefinition<V, F>, commit: RepoCommit, user: string | null, source: string): { ops: RecordOp<F>[]; rejected: QuarantineEntry[] } {
  const ops: RecordOp<F>[] = []
  const rejected: QuarantineEntry[] = []
  const origin: OpOrigin = { source, did: commit.did, rev: commit.rev, ...(commit.cursor === undefined ? {} : { cursor: commit.cursor }) }
  for (const op of commit.ops) {
    if (op.collection !== def.nsid) continue
    const result = toStoreOp(def, op, user, origin)
    if (isStoreOp(result)) ops.push(result)
    else rejected.push(result)
  }
  return { ops, rejected }
}

/**
 * A repo read as store ops: every valid record an upsert at the repo's rev, every invalid one
 * a quarantine entry. Records older than a `forget` of the repo are left out: erased stays erased.
 */
export function snapshotOps<V, F extends object>(def: CollectionDefinition<V, F>, snapshot: RepoSnapshot, user: string | null, forgottenAtUs?: number): { ops: UpsertOp<F>[]; rejected: QuarantineEntry[] } {
  const records = forgottenAtUs === undefined ? snapshot.records : snapshot.records.filter((r) => tidTimeUs(r.rkey) > forgottenAtUs)
  const commit: RepoCommit = { did: snapshot.did, rev: snapshot.rev, ops: records.map((r) => ({ action: 'upsert', collection: def.nsid, rkey: r.rkey, cid: r.cid, record: r.value })) }
  const { ops, rejected } = commitToOps(def, commit, user, `repo:${snapshot.via}`)
  return { ops: ops as UpsertOp<F>[], rejected }
}

const TID_PATTERN = /^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$/

/** Record keys of `tid` lexicons: 13 base32-sortable characters. */
export function isTid(rkey: string): boolean {
  return TID_PATTERN.test(rkey)
}

/** A TID's timestamp (microseconds): when a commit (rev) or record (rkey) was made. */
export function tidTimeUs(tid: string): number {
  try {
    return TID.fromStr(tid).timestamp()
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

export const RAW_LIMIT = 2048

/** Records are shallow: ours are flat, and ATProto's own nest a few levels (embeds, facets). */
export const MAX_RECORD_DEPTH = 32
/** Values (array items, object fields) in one record; a mood has four. */
export const MAX_RECORD_NODES = 10_000

/**
 * Why `value` is too deep or too large to validate, or undefined. Iterative, so a hostile value
 * nested 100,000 deep costs a bounded walk instead of a stack overflow in whatever recurses
 * over it next.
 */
export function shapeProblem(value: unknown): string | undefined {
  if (isFlat(value)) return undefined
  const stack: [unknown, number][] = [[value, 1]]
  let nodes = 0
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    // Bytes and CIDs (from CBOR) are leaves: only plain arrays and objects nest.
    if (typeof node !== 'object' || node === null || !(Array.isArray(node) || isPlainObject(node))) continue
    if (depth > MAX_RECORD_DEPTH) return `record nests deeper than ${MAX_RECORD_DEPTH} levels`
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (++nodes > MAX_RECORD_NODES) return `record holds more than ${MAX_RECORD_NODES} values`
      stack.push([child, depth + 1])
    }
  }
  return undefined
}

/**
 * A plain object whose values are all leaves (no array, no plain object), with at most
 * `MAX_RECORD_NODES` of them: the walk below would find nothing (depth 2 at most), so the
 * common record skips it and its allocations.
 */
function isFlat(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return false
  let nodes = 0
  for (const key in value) {
    if (!Object.hasOwn(value, key)) return false
    const child = (value as Record<string, unknown>)[key]
    if (typeof child === 'object' && child !== null && (Array.isArray(child) || isPlainObject(child))) return false
    if (++nodes > MAX_RECORD_NODES) return false
  }
  return true
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

export function truncate(text: string, limit = RAW_LIMIT): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}…(${text.length} chars)`
}

function where(origin: OpOrigin, rkey: string) {
  return { source: origin.source, did: origin.did, rkey, ...(origin.cursor === undefined ? {} : { cursor: origin.cursor }) }
}

function rawOf(record: unknown): string | undefined {
  try {
    const text = JSON.stringify(record)
    return text === undefined ? undefined : truncate(text)
  } catch {
    return undefined
  }
}
