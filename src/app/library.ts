import { createHash } from 'node:crypto'
import type { Db } from 'mongodb'
import { Database } from '../store/database.ts'
import type { Writer, WriterOptions, WriteResult } from '../writer/writer.ts'
import { createWriter } from './app.ts'

/**
 * The functions the platform's serverless handlers call. They take a MongoDB handle and
 * options (never process.env) and never fail because the PDS is down: the mood is kept and
 * the retry worker writes it later. Warm invocations reuse one Writer per database and PDS,
 * so its sessions and its view of each account's write budget carry over.
 */
const writers = new WeakMap<Db, Map<string, Writer>>()

function writerFor(db: Db, opts: WriterOptions): Writer {
  const perDb = writers.get(db) ?? new Map<string, Writer>()
  writers.set(db, perDb)
  const key = `${opts.pdsUrl}\u0000${keysOf(opts)}`
  let writer = perDb.get(key)
  if (!writer) {
    writer = createWriter(new Database(db), opts)
    perDb.set(key, writer)
  }
  return writer
}

/**
 * Which keys a Writer was built with, as a digest (never the keys themselves): a function given
 * new keys during a rotation gets a Writer that reads with them, not the one built before.
 */
function keysOf(opts: WriterOptions): string {
  if (opts.secret === undefined) return ''
  return createHash('sha256').update(`${opts.secret}\u0000${opts.previousSecret ?? ''}`).digest('base64url')
}

export function postMood(db: Db, opts: WriterOptions, input: { user: string; text: string; when?: Date }): Promise<WriteResult> {
  return writerFor(db, opts).post(input)
}

export function editMood(db: Db, opts: WriterOptions, input: { user: string; id: string; text: string; expectCid?: string }): Promise<WriteResult> {
  return writerFor(db, opts).edit(input)
}

export function deleteMood(db: Db, opts: WriterOptions, input: { user: string; id: string }): Promise<WriteResult> {
  return writerFor(db, opts).delete(input)
}

export function forgetUser(db: Db, opts: WriterOptions, input: { user: string }) {
  return writerFor(db, opts).forget(input)
}

export interface UserSyncStatus {
  total: number
  confirmed: number
  written: number
  pending: number
  failed: number
  noAccount: number
  /** Documents that never had an ATProto record and are not in the outbox (run `migrate`). */
  notSynced: number
  /** Written but not seen back from the network for longer than `unconfirmedAfterMs`. */
  unconfirmed: number
}

/** A user's moods by outbox state, for the platform's UI or support tools. */
export async function syncStatus(db: Db, input: { user: string; unconfirmedAfterMs?: number }): Promise<UserSyncStatus> {
  const docs = await new Database(db).outbox.statesOf(input.user)
  const cutoff = Date.now() - (input.unconfirmedAfterMs ?? 5 * 60_000)
  const status: UserSyncStatus = { total: docs.length, confirmed: 0, written: 0, pending: 0, failed: 0, noAccount: 0, notSynced: 0, unconfirmed: 0 }
  for (const doc of docs) {
    // A document with no outbox state came from the network (confirmed) or predates moodsync.
    const state = doc.atproto?.state ?? (doc.atproto?.rkey ? 'confirmed' : 'not-synced')
    if (state === 'no-account') status.noAccount++
    else if (state === 'not-synced') status.notSynced++
    else status[state]++
    if (state === 'written' && (doc.atproto?.writtenAt?.getTime() ?? 0) < cutoff) status.unconfirmed++
  }
  return status
}
