import type { Logger } from '../logger.ts'
import { RepoUnavailableError } from './repo-reader.ts'
import type { Subject } from './subjects.ts'

/** A failure while handling one subject, by kind, so a run reports them and goes on. */
export function failureKind(err: unknown): string {
  if (err instanceof RepoUnavailableError) return err.kind
  const name = (err as Error)?.name
  if (name === 'PdsError') return (err as { status?: number }).status === 429 ? 'rate-limited' : 'pds'
  if (name === 'NoCredentialsError') return 'no-credentials'
  if (name === 'InactiveAccountError') return 'inactive'
  if (name === 'StoreError' || name?.startsWith('Mongo')) return 'store'
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
  log.warn({ user: subject.user, did: subject.did, kind, err: (err as Error).message }, 'reconcile failed for a subject')
}

export function failureCount(failures: Failures): number {
  return Object.values(failures.byKind).reduce((a, b) => a + b, 0)
}
