import { MongoError } from 'mongodb'
import { RepoUnavailableError } from '../atproto/repo-reader.ts'
import { PdsError } from '../atproto/xrpc.ts'
import { InactiveAccountError, NoCredentialsError, StoreError, WrongSecretError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Subject } from '../store/users.ts'

/** A failure while handling one subject, by kind, so a run reports them and goes on. */
export function failureKind(err: unknown): string {
  if (err instanceof RepoUnavailableError) return err.kind
  if (err instanceof PdsError) return err.status === 429 ? 'rate-limited' : 'pds'
  if (err instanceof NoCredentialsError) return 'no-credentials'
  if (err instanceof WrongSecretError) return 'wrong-secret'
  if (err instanceof InactiveAccountError) return 'inactive'
  if (err instanceof StoreError || err instanceof MongoError) return 'store'
  return 'error'
}

export interface Failures {
  byKind: Record<string, number>
  /** The first few in full. */
  first: { user: string | null; did: string | null; kind: string; message: string }[]
}

export function emptyFailures(): Failures {
  return { byKind: {}, first: [] }
}

export function addFailure(failures: Failures, subject: Subject, err: unknown, log: Logger): void {
  const kind = failureKind(err)
  failures.byKind[kind] = (failures.byKind[kind] ?? 0) + 1
  if (failures.first.length < 20) failures.first.push({ ...subject, kind, message: (err as Error).message })
  log.warn({ user: subject.user, did: subject.did, kind, err }, 'reconcile failed for a subject')
}

export function failureCount(failures: Failures): number {
  return Object.values(failures.byKind).reduce((a, b) => a + b, 0)
}
