import { RepoUnavailableError, type RepoReader, type RepoSnapshot } from '../atproto/repo-reader.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { MoodDoc, RepoStateDoc } from '../store/collections.ts'
import type { Database } from '../store/database.ts'
import { addApplyResult, emptyApplyResult, type ApplyResult, type DeleteOp, type MoodOp, type UpsertOp } from '../store/ops.ts'
import type { QuarantineEntry } from '../store/quarantine.ts'
import { isInactive } from '../sync/accounts.ts'
import { moodCollection } from '../sync/mood.ts'
import { snapshotOps } from '../sync/records.ts'
import type { RevChecker } from './revs.ts'

/** A repo after the network part: read (to apply), or settled without a read. */
export type Prepared =
  | { did: string; outcome: 'unchanged'; records: number }
  /** The account is not active: `moods` of its moods hidden (or, in a dry run, to hide). */
  | { did: string; outcome: 'hidden'; records: number; moods: number }
  | { did: string; outcome: 'read'; snapshot: RepoSnapshot }

export interface AppliedSnapshots {
  applied: ApplyResult
  records: number
  quarantined: number
  bytes: number
  /** Moods a status change had hidden, back now that the host serves the repo again. */
  restored: number
}

/** Ops per apply call: bounded so one huge repo does not become one huge MongoDB batch. */
const APPLY_CHUNK = 1000

/**
 * Brings repos' moods in MongoDB to the repos' current state, through the indexer's apply
 * path: every record upserted, every live mood whose record is gone marked deleted (the deletes
 * a stream missed while it was down), the rev reached recorded so an unchanged repo costs one
 * small request next time, and the repo taken off the backfill queue. Reading (`prepare`) and
 * writing (`applyMany`) are apart so a backfill writes many repos in one round of queries.
 */
export class RepoSync {
  readonly reader: RepoReader
  readonly #store: Database
  readonly #log: Logger

  constructor(opts: { store: Database; reader: RepoReader; log?: Logger }) {
    this.#store = opts.store
    this.reader = opts.reader
    this.#log = (opts.log ?? silentLogger).child({ component: 'repo-sync' })
  }

  /** What the last reads of these repos reached (one query for all). */
  async states(dids: readonly string[]): Promise<Map<string, RepoStateDoc>> {
    return this.#store.repos.many(dids)
  }

  /**
   * The network part: skips a repo still at the rev last read (`state`, looked up when not
   * given; `revs` answers for many repos at once), hides the moods of an account its host says
   * is not active, else reads the repo (verified). Throws RepoUnavailableError for the other
   * failures. An unchanged repo stays queued until the caller calls `dequeue`. With `dryRun`
   * it only reads: the moods it would hide are counted, not hidden.
   */
  async prepare(did: string, opts: { force?: boolean; state?: RepoStateDoc | null; revs?: RevChecker; dryRun?: boolean } = {}): Promise<Prepared> {
    try {
      if (!opts.force) {
        const state = opts.state === undefined ? await this.#store.repos.get(did) : opts.state
        if (state) {
          const current = opts.revs ? await opts.revs.revOf(state) : await this.reader.latestRev(did).catch(() => undefined)
          if (current === state.rev) return { did, outcome: 'unchanged', records: state.records }
        }
      }
      return { did, outcome: 'read', snapshot: await this.reader.read(did) }
    } catch (err) {
      if (!(err instanceof RepoUnavailableError) || !isInactive(err.kind)) throw err
      if (opts.dryRun) return { did, outcome: 'hidden', records: 0, moods: await this.#store.moods.countLive(did) }
      // The host says the account is not active: its moods leave the platform's reads until it is.
      const hidden = await this.#store.moods.hideDid(did, err.kind)
      await this.dequeue([did])
      this.#log.info({ did, status: err.kind, moods: hidden }, 'repo not active: moods hidden')
      return { did, outcome: 'hidden', records: 0, moods: hidden }
    }
  }

  /** The MongoDB part, for any number of repos at once: a few queries whatever their count. */
  async applyMany(snapshots: readonly RepoSnapshot[]): Promise<AppliedSnapshots> {
    const done: AppliedSnapshots = { applied: emptyApplyResult(), records: 0, quarantined: 0, bytes: 0, restored: 0 }
    if (snapshots.length === 0) return done
    const moods = this.#store.moods
    const { known, changes } = await this.#changes(snapshots)
    // The host served the repo, so the account is active: bring back what a status change hid.
    for (const did of changes.restore) {
      const restored = await moods.restoreDid(did)
      done.restored += restored
    }
    for (let i = 0; i < changes.fresh.length; i += APPLY_CHUNK) addApplyResult(done.applied, await moods.apply(changes.fresh.slice(i, i + APPLY_CHUNK)))
    // After a restore the documents as read are stale: then apply looks them up itself.
    const hint = changes.restore.length > 0 ? {} : { known }
    for (let i = 0; i < changes.again.length; i += APPLY_CHUNK) addApplyResult(done.applied, await moods.apply(changes.again.slice(i, i + APPLY_CHUNK), { insertFirst: false, ...hint }))
    await this.#store.quarantine.add(changes.rejected)
    done.quarantined = changes.rejected.length
    done.records = changes.records
    done.bytes = changes.bytes

    const dids = snapshots.map((s) => s.did)
    await this.#store.repos.saveMany(snapshots.map((s) => ({ _id: s.did, rev: s.rev, pds: s.pds, via: s.via, records: s.records.length })))
    await this.dequeue(dids)
    this.#log.debug({ repos: snapshots.length, records: done.records, ...done.applied }, 'repos applied')
    return done
  }

  /**
   * What `applyMany` would change, decided the same way, with nothing written (no moods, no
   * quarantine, no recorded rev, the queue untouched): `backfill --dry-run`.
   */
  async planMany(snapshots: readonly RepoSnapshot[]): Promise<AppliedSnapshots> {
    const done: AppliedSnapshots = { applied: emptyApplyResult(), records: 0, quarantined: 0, bytes: 0, restored: 0 }
    if (snapshots.length === 0) return done
    const { known, changes } = await this.#changes(snapshots)
    // The documents as they would be after the restores applyMany makes first.
    const restoring = new Set(changes.restore)
    const after = known.map((doc) => {
      if (!restoring.has(doc.atproto!.did!) || doc.atproto?.hidden === undefined) return doc
      done.restored++
      const { hidden: _hidden, ...atproto } = doc.atproto
      const { deleted: _deleted, ...rest } = doc
      return { ...rest, atproto }
    })
    addApplyResult(done.applied, await this.#store.moods.plan([...changes.fresh, ...changes.again], { known: after }))
    done.quarantined = changes.rejected.length
    done.records = changes.records
    done.bytes = changes.bytes
    return done
  }

  /** The ops that bring MongoDB to these repos' state, from the documents as they are now. */
  async #changes(snapshots: readonly RepoSnapshot[]) {
    const moods = this.#store.moods
    const dids = snapshots.map((s) => s.did)
    // Whole documents: the apply below plans from them instead of looking them up again.
    const known = await moods.ofDids(dids)
    const byDid = new Map<string, typeof known>()
    for (const doc of known) {
      const list = byDid.get(doc.atproto!.did!)
      if (list) list.push(doc)
      else byDid.set(doc.atproto!.did!, [doc])
    }
    const users = await this.#store.users.resolve(dids)
    const forgotten = await this.#store.forgotten.since(dids)
    await this.#store.identities.set(snapshots.flatMap((s) => (s.handle === undefined ? [] : [{ did: s.did, handle: s.handle, from: 'did-document' as const }])))

    const changes = { restore: [] as string[], fresh: [] as UpsertOp[], again: [] as MoodOp[], rejected: [] as QuarantineEntry[], records: 0, bytes: 0 }
    for (const snapshot of snapshots) {
      const docs = byDid.get(snapshot.did) ?? []
      const hidden = (doc: Pick<MoodDoc, 'atproto'>) => doc.atproto?.hidden !== undefined
      if (docs.some(hidden)) changes.restore.push(snapshot.did)
      const parsed = snapshotOps(moodCollection, snapshot, users.get(snapshot.did) ?? null, forgotten.get(snapshot.did))
      changes.rejected.push(...parsed.rejected)
      // Records MongoDB has never seen go down the insert-first path; the rest skip it.
      const seen = new Set(docs.map((doc) => doc.atproto?.rkey))
      for (const op of parsed.ops) (seen.has(op.rkey) ? changes.again : changes.fresh).push(op)
      const present = new Set(snapshot.records.map((r) => r.rkey))
      for (const doc of docs) {
        const rkey = doc.atproto!.rkey!
        if ((!doc.deleted || hidden(doc)) && !present.has(rkey)) changes.again.push({ kind: 'delete', did: snapshot.did, rkey, rev: snapshot.rev } satisfies DeleteOp)
      }
      changes.records += snapshot.records.length
      changes.bytes += snapshot.bytes
    }
    return { known, changes }
  }

  /** Takes repos off the backfill queue (they are caught up). */
  async dequeue(dids: readonly string[]): Promise<void> {
    await this.#store.backfill.remove(dids)
  }
}
