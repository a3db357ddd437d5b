import { ObjectId, type AnyBulkWriteOperation, type Collection, type Db, type Document, type Filter } from 'mongodb'
import { StoreError } from '../errors.ts'
import { bulkWrite } from './bulk.ts'
import { COLLECTIONS, type MoodFields, type RecordDoc } from './collections.ts'
import { isDuplicateKey } from './mongo-errors.ts'
import { emptyApplyResult, type ApplyResult, type RecordOp, type UpsertOp } from './ops.ts'
import { RepoStateStore } from './repos.ts'
import type { Subject } from './users.ts'

export type { ApplyResult, DeleteOp, MoodOp, RecordOp, UpsertOp } from './ops.ts'

const MAX_ATTEMPTS = 5

/**
 * One collection of records (the platform's `moods` first), keyed by (repo DID, rkey). Every
 * write is computed from the current documents and guarded on what was read, so applying the
 * same ops twice changes nothing and an older op never overwrites a newer one. Correct on
 * MongoDB and on FerretDB (no transactions needed). It knows nothing of any record type: the
 * ops carry the document fields their collection's definition mapped.
 */
export class RecordStore<F extends object> {
  /** The driver's collection, typed; the store itself goes through the untyped `#docs`. */
  readonly collection: Collection<RecordDoc<F>>
  // The driver's filter and update types cannot follow a generic document type: the store
  // builds them untyped and types what it returns.
  readonly #docs: Collection<Document>
  readonly #repos: RepoStateStore
  readonly #db: Db

  constructor(db: Db, name: string, opts: { repos?: RepoStateStore } = {}) {
    this.#db = db
    this.collection = db.collection<RecordDoc<F>>(name)
    this.#docs = db.collection(name)
    this.#repos = opts.repos ?? new RepoStateStore(db)
  }

  /**
   * Documents of one repo. The rkey clause changes nothing (a document with a DID always has
   * an rkey) but lets MongoDB use the partial (DID, rkey) index instead of scanning.
   */
  static byDid(did: string): Filter<Document> {
    return { 'atproto.did': did, 'atproto.rkey': { $exists: true } }
  }

  async get(did: string, rkey: string): Promise<RecordDoc<F> | null> {
    return (await this.#docs.findOne({ 'atproto.did': did, 'atproto.rkey': rkey })) as RecordDoc<F> | null
  }

  async listByDid(did: string, opts: { includeDeleted?: boolean } = {}): Promise<RecordDoc<F>[]> {
    const filter = { ...RecordStore.byDid(did), ...(opts.includeDeleted ? {} : { deleted: { $ne: true } }) }
    return (await this.#docs.find(filter).sort({ 'atproto.rkey': 1 }).toArray()) as RecordDoc<F>[]
  }

  /** Every document of these repos, deleted ones included (one query for all). */
  async ofDids(dids: readonly string[]): Promise<RecordDoc<F>[]> {
    return (await this.#docs.find({ 'atproto.did': { $in: [...dids] }, 'atproto.rkey': { $exists: true } }).toArray()) as RecordDoc<F>[]
  }

  /** A subject's documents, deleted ones included (legacy ones without a DID by their user). */
  async ofSubject(subject: Subject): Promise<RecordDoc<F>[]> {
    const clauses: Filter<Document>[] = []
    if (subject.did !== null) clauses.push(RecordStore.byDid(subject.did))
    if (subject.user !== null) clauses.push(subject.did === null ? { user: subject.user } : { user: subject.user, 'atproto.did': { $exists: false } })
    const filter = clauses.length === 1 ? clauses[0]! : { $or: clauses }
    return (await this.#docs.find(filter).sort({ _id: 1 }).toArray()) as RecordDoc<F>[]
  }

  /**
   * Documents of these repos, in one filter. The rkey clause changes nothing (a document with a
   * DID always has an rkey) but lets MongoDB use the partial (DID, rkey) index.
   */
  static byDids(dids: readonly string[]): Filter<Document> {
    return dids.length === 1 ? RecordStore.byDid(dids[0]!) : { 'atproto.did': { $in: [...new Set(dids)] }, 'atproto.rkey': { $exists: true } }
  }

  /** Those of `dids` with documents here, in one query. */
  async withDocuments(dids: readonly string[]): Promise<Set<string>> {
    if (dids.length === 0) return new Set()
    return new Set((await this.#docs.distinct('atproto.did', RecordStore.byDids(dids))) as string[])
  }

  /** Whether the DID has any document here. */
  async hasDid(did: string): Promise<boolean> {
    return (await this.#docs.findOne(RecordStore.byDid(did), { projection: { _id: 1 } })) !== null
  }

  /** Every repo DID with documents here. */
  async dids(): Promise<string[]> {
    return ((await this.#docs.distinct('atproto.did', {})) as unknown[]).filter((d): d is string => typeof d === 'string')
  }

  /** Hides a DID's live records (account deactivated, taken down, suspended), keeping them. */
  async hideDid(did: string, status: string): Promise<number> {
    return this.hideDids([did], status)
  }

  /** hideDid for many repos at once: one update, one forget, whatever their number. */
  async hideDids(dids: readonly string[], status: string): Promise<number> {
    if (dids.length === 0) return 0
    const res = await this.#docs.updateMany({ ...RecordStore.byDids(dids), deleted: { $ne: true } }, { $set: { deleted: true, 'atproto.hidden': status } })
    // The rev a backfill reached no longer describes MongoDB: the next one must read the repo
    // (and restore), even if the account comes back without a new commit.
    await this.#repos.forgetMany(dids)
    return res.modifiedCount
  }

  /** How many live records hideDid would hide now (a dry run's answer). */
  async countLive(did: string): Promise<number> {
    return this.#docs.countDocuments({ ...RecordStore.byDid(did), deleted: { $ne: true } })
  }

  /** Brings back what hideDid hid; records deleted meanwhile stay deleted. */
  async restoreDid(did: string): Promise<number> {
    return this.restoreDids([did])
  }

  /** restoreDid for many repos at once, in one update. */
  async restoreDids(dids: readonly string[]): Promise<number> {
    if (dids.length === 0) return 0
    const res = await this.#docs.updateMany({ ...RecordStore.byDids(dids), 'atproto.hidden': { $exists: true } }, { $unset: { deleted: '', 'atproto.hidden': '' } })
    return res.modifiedCount
  }

  /** The account is gone: every record of the DID is soft-deleted for good. */
  async deleteDid(did: string): Promise<number> {
    return this.deleteDids([did])
  }

  /** deleteDid for many repos at once, in two updates. */
  async deleteDids(dids: readonly string[]): Promise<number> {
    if (dids.length === 0) return 0
    const live = await this.#docs.updateMany({ ...RecordStore.byDids(dids), deleted: { $ne: true } }, { $set: { deleted: true } })
    const hidden = await this.#docs.updateMany({ ...RecordStore.byDids(dids), 'atproto.hidden': { $exists: true } }, { $unset: { 'atproto.hidden': '' } })
    return live.modifiedCount + hidden.modifiedCount
  }

  /**
   * Applies a batch idempotently. Ops for the same record collapse to the newest; a write that
   * loses a race with another writer (guard miss, duplicate key) makes the batch recompute.
   */
  async apply(ops: readonly RecordOp<F>[], opts: { insertFirst?: boolean; known?: readonly RecordDoc<F>[] } = {}): Promise<ApplyResult> {
    const latest = collapse(ops)
    // A caller that knows the records exist (a repo read again) skips the doomed insert.
    const inserted = opts.insertFirst === false ? { ops: new Set<RecordOp<F>>(), all: false, amid: 0 } : await this.#insertNew(latest)
    const rest = inserted.all ? [] : latest.filter((op) => !inserted.ops.has(op))
    for (let attempt = 1; ; attempt++) {
      // A caller that just read the documents (a repo read) saves the lookup, once: a retry
      // after a lost race always reads afresh.
      const plan = await this.#plan(rest, attempt === 1 ? opts.known : undefined)
      plan.result.inserted += inserted.ops.size + inserted.amid
      // Inserted amid refusals, those were then read back as they are: unchanged, by the plan.
      plan.result.unchanged -= inserted.amid
      if (plan.writes.length === 0) return plan.result
      try {
        if ((await bulkWrite(this.#db, this.#docs, plan.writes)).matchedCount === plan.updates) return plan.result
      } catch (err) {
        if (!isDuplicateKey(err)) throw new StoreError('applying a batch of records failed', { cause: err })
      }
      if (attempt >= MAX_ATTEMPTS) {
        throw new StoreError(`applying a batch of records kept racing with another writer (${attempt} attempts)`)
      }
    }
  }

  /**
   * What `apply` would do with these ops now, decided the same way, with nothing written: a
   * dry run's answer. `known` stands for the documents as they would be when applying (the
   * caller may pass them as a change it skipped would leave them).
   */
  async plan(ops: readonly RecordOp<F>[], opts: { known?: readonly RecordDoc<F>[] } = {}): Promise<ApplyResult> {
    return (await this.#plan(collapse(ops), opts.known)).result
  }

  /**
   * The common case first: a record seen for the first time. Inserting it outright lets the
   * unique (DID, rkey) index say whether it is new, saving a lookup round trip; it can only
   * succeed exactly where the read-then-write path would insert. Anything the index refuses
   * (a replay, an update, a writer's pending mood) goes through that path. After any refusal
   * the whole batch does, since a server may stop at the first error without saying so.
   */
  async #insertNew(ops: readonly RecordOp<F>[]): Promise<{ ops: Set<RecordOp<F>>; all: boolean; amid: number }> {
    // A ref that is no MongoDB id (another client's) can name no document: such a record is
    // decided exactly as one without a ref.
    const fresh = ops.filter((op): op is UpsertOp<F> => op.kind === 'upsert' && !namesDocument(op.ref))
    if (fresh.length === 0) return { ops: new Set(), all: false, amid: 0 }
    try {
      await this.#docs.insertMany(fresh.map(newDoc), { ordered: false })
      return { ops: new Set(fresh), all: fresh.length === ops.length, amid: 0 }
    } catch (err) {
      if (!isDuplicateKey(err)) throw new StoreError('applying a batch of records failed', { cause: err })
      // The server's own count of the documents it did insert, for the report only. It can be
      // no more than the inserts it did not refuse: mongo-java-server counts the refused ones too.
      const { insertedCount, writeErrors } = err as { insertedCount?: unknown; writeErrors?: unknown }
      const refused = Array.isArray(writeErrors) ? writeErrors.length : 1
      const amid = typeof insertedCount === 'number' ? Math.max(0, Math.min(insertedCount, fresh.length - refused)) : 0
      return { ops: new Set(), all: false, amid }
    }
  }

  async #plan(ops: readonly RecordOp<F>[], known?: readonly RecordDoc<F>[]) {
    const result = emptyApplyResult()
    const writes: AnyBulkWriteOperation<Document>[] = []
    let updates = 0
    if (ops.length === 0) return { result, writes, updates }

    const existing = known ? byKey(known) : await this.#findExisting(ops)
    const refTargets = await this.#findRefTargets(ops.filter((op) => op.kind === 'upsert' && !existing.has(keyOf(op))) as UpsertOp<F>[])
    // Two records naming the same document (a duplicate left by an interrupted migration):
    // the first in the batch (in a repo read, the oldest TID) claims it; the others stay apart.
    const claimed = new Set<string>()

    for (const op of ops) {
      const doc = existing.get(keyOf(op))
      const storedRev = doc?.atproto?.rev
      if (storedRev !== undefined && storedRev > op.rev) {
        result.stale++
        continue
      }
      const state = doc?.atproto?.state
      const echo = doc !== undefined && isEcho(doc, op)
      if (state === 'pending' && !echo) {
        result.pending++
        continue
      }
      if (op.kind === 'delete') {
        if (!doc || (doc.deleted && storedRev === op.rev && !echo)) {
          result.unchanged++
          continue
        }
        writes.push({
          updateOne: {
            filter: guard(doc),
            update: { $set: { deleted: true, 'atproto.rev': op.rev, ...(state ? CONFIRMED : {}) }, $unset: { 'atproto.hidden': '', ...OUTBOX_FIELDS } },
          },
        })
        updates++
        if (echo) result.confirmed++
        else result.deleted++
        continue
      }
      if (doc) {
        const user = op.user ?? doc.user
        const hidden = doc.atproto?.hidden !== undefined
        // The same version seen again, at this rev or a later one (a repo read): rewriting the
        // rev alone would cost a write per record on every read. What a newer rev could still
        // order is a delete from before a re-creation under the same TID, which clients never do.
        if (!echo && (!doc.deleted || hidden) && doc.atproto?.cid === op.cid && sameContent(doc, op.fields, user)) {
          result.unchanged++
          continue
        }
        writes.push({ updateOne: { filter: guard(doc), update: upsertUpdate(op, user, hidden, state !== undefined) } })
        updates++
        if (echo) result.confirmed++
        else result.updated++
        continue
      }
      const target = op.ref === undefined ? undefined : refTargets.get(op.ref)
      if (target && !claimed.has(op.ref!) && canAttach(target, op)) {
        claimed.add(op.ref!)
        writes.push({ updateOne: { filter: guard(target), update: upsertUpdate(op, op.user ?? target.user, false, target.atproto?.state !== undefined) } })
        updates++
        result.attached++
        continue
      }
      writes.push({ insertOne: { document: newDoc(op) } })
      result.inserted++
    }
    return { result, writes, updates }
  }

  async #findExisting(ops: readonly RecordOp<F>[]): Promise<Map<string, RecordDoc<F>>> {
    const dids = [...new Set(ops.map((op) => op.did))]
    const rkeys = [...new Set(ops.map((op) => op.rkey))]
    // A superset query ($in on each field) is cheaper than one $or clause per record.
    return byKey((await this.#docs.find({ 'atproto.did': { $in: dids }, 'atproto.rkey': { $in: rkeys } }).toArray()) as RecordDoc<F>[])
  }

  async #findRefTargets(ops: readonly UpsertOp<F>[]): Promise<Map<string, RecordDoc<F>>> {
    const ids = ops.map((op) => op.ref).filter(namesDocument)
    if (ids.length === 0) return new Map()
    const docs = (await this.#docs.find({ _id: { $in: ids.map((id) => new ObjectId(id)) } }).toArray()) as RecordDoc<F>[]
    return new Map(docs.map((doc) => [doc._id.toHexString(), doc]))
  }
}

/** Whether a record's `ref` can name a document: a MongoDB id, 24 hex digits. */
function namesDocument(ref: string | undefined): ref is string {
  return ref !== undefined && /^[0-9a-f]{24}$/i.test(ref) && ObjectId.isValid(ref)
}

function newDoc<F extends object>(op: UpsertOp<F>): RecordDoc<F> {
  return { _id: new ObjectId(), user: op.user, ...op.fields, atproto: { did: op.did, rkey: op.rkey, cid: op.cid, rev: op.rev } } as RecordDoc<F>
}

function byKey<D extends RecordDoc<object>>(docs: readonly D[]): Map<string, D> {
  const map = new Map<string, D>()
  for (const doc of docs) {
    if (doc.atproto?.did) map.set(`${doc.atproto.did}\u0000${doc.atproto.rkey}`, doc)
  }
  return map
}

function keyOf(op: { did: string; rkey: string }): string {
  return `${op.did}\u0000${op.rkey}`
}

/** Keeps, per record, the op with the greatest rev; among equal revs the later one. */
function collapse<O extends RecordOp<object>>(ops: readonly O[]): O[] {
  const byKey = new Map<string, O>()
  for (const op of ops) {
    const prev = byKey.get(keyOf(op))
    if (!prev || op.rev >= prev.rev) byKey.set(keyOf(op), op)
  }
  return [...byKey.values()]
}

/** Matches the document only as it was read, so a concurrent change makes the write miss. */
function guard(doc: RecordDoc<object>): Filter<Document> {
  const rev = doc.atproto?.rev
  const version = doc.atproto?.version
  // The writer's local changes (edit, delete) keep the rev but bump the version: without it an
  // echo planned just before an edit would overwrite the edit, and the edit would never be sent.
  return {
    _id: doc._id,
    'atproto.rev': rev === undefined ? { $exists: false } : rev,
    'atproto.version': version === undefined ? { $exists: false } : version,
  }
}

const CONFIRMED = { 'atproto.state': 'confirmed' as const }
/** The writer's retry bookkeeping, dropped once the network shows the record. */
const OUTBOX_FIELDS = { 'atproto.op': '', 'atproto.swap': '', 'atproto.attempts': '', 'atproto.nextAttemptAt': '', 'atproto.error': '', 'atproto.uncertain': '', 'atproto.claimedBy': '', 'atproto.claimedUntil': '' } as const

/**
 * The network shows a change of ours: the record with the CID the writer computed, or the
 * delete it asked for. Either confirms the outbox entry (written or still marked pending).
 */
function isEcho(doc: RecordDoc<object>, op: RecordOp<object>): boolean {
  const at = doc.atproto
  if (at?.state !== 'pending' && at?.state !== 'written') return false
  return op.kind === 'delete' ? at.op === 'delete' : at.op !== 'delete' && at.cid === op.cid
}

/**
 * The new state of a record. A record of a hidden account stays hidden until it is restored;
 * one the writer tracks (`tracked`) is marked confirmed and loses its retry bookkeeping.
 */
function upsertUpdate(op: UpsertOp<object>, user: string | null, hidden: boolean, tracked: boolean) {
  const outbox = tracked ? { set: CONFIRMED, unset: OUTBOX_FIELDS } : { set: {}, unset: {} }
  if (hidden) {
    return { $set: { user, ...op.fields, 'atproto.cid': op.cid, 'atproto.rev': op.rev, ...outbox.set }, ...(tracked ? { $unset: outbox.unset } : {}) }
  }
  return {
    $set: {
      user,
      ...op.fields,
      'atproto.did': op.did,
      'atproto.rkey': op.rkey,
      'atproto.cid': op.cid,
      'atproto.rev': op.rev,
      ...outbox.set,
    },
    $unset: { deleted: '' as const, ...outbox.unset },
  }
}

function sameContent(doc: RecordDoc<object>, fields: object, user: string | null): boolean {
  if (doc.user !== user) return false
  const stored = doc as unknown as Record<string, unknown>
  return Object.entries(fields).every(([key, value]) => sameValue(stored[key], value))
}

/**
 * A record may claim the document its `ref` names only when that document is not already
 * another record's, and belongs to the same user: a client cannot hijack someone's record.
 */
/** Field values as the driver returns them: dates compare by time, the rest (strings, numbers) by value. */
function sameValue(stored: unknown, value: unknown): boolean {
  if (value instanceof Date) return stored instanceof Date && stored.getTime() === value.getTime()
  return stored === value
}

function canAttach(target: RecordDoc<object>, op: UpsertOp<object>): boolean {
  const at = target.atproto
  if (at?.did !== undefined && (at.did !== op.did || at.rkey !== op.rkey)) return false
  if (at?.did === undefined && at?.rkey !== undefined && at.rkey !== op.rkey) return false
  return target.user === null ? at?.did === op.did : target.user === op.user
}

/** The platform's `moods`: the first collection, and for now the only one in production. */
export class MoodStore extends RecordStore<MoodFields> {
  constructor(db: Db, opts: { repos?: RepoStateStore } = {}) {
    super(db, COLLECTIONS.moods, opts)
  }
}
