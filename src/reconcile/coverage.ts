import type { Logger } from '../logger.ts'
import type { Subject } from '../store/users.ts'
import { failureKind } from './failures.ts'

/** A user or repo a run could not check (or fix), and why. */
export interface Unchecked {
  user: string | null
  did: string | null
  /** `unresolvable`, `unreachable`, `not-found`, `store`, `rate-limited`, ... (`failures.ts`). */
  kind: string
  message: string
  /** The DID's latest handle, when moodsync has seen one. */
  handle?: string
}

/**
 * How far a run over users/repos got. Every reconcile report carries it, so no summary can
 * claim more than was done: a run that was interrupted, or could not check some subjects,
 * says so and names them, apart from what it found in the others.
 */
export interface Coverage {
  /** Users/repos the run was asked to handle. */
  total: number
  /** Handled to the end (whatever was found in them). */
  checked: number
  /** Stopped by its signal (SIGINT/SIGTERM): `total - checked - unchecked.length` were never reached. */
  interrupted: boolean
  /** Every subject that could not be handled, in the order they failed (all of them: they are the work left). */
  unchecked: Unchecked[]
  /** The same, counted by kind. */
  uncheckedByKind: Record<string, number>
}

export function emptyCoverage(total: number): Coverage {
  return { total, checked: 0, interrupted: false, unchecked: [], uncheckedByKind: {} }
}

export function addUnchecked(coverage: Coverage, subject: Subject, err: unknown, log: Logger): void {
  const kind = failureKind(err)
  coverage.uncheckedByKind[kind] = (coverage.uncheckedByKind[kind] ?? 0) + 1
  coverage.unchecked.push({ user: subject.user, did: subject.did, kind, message: (err as Error).message })
  log.warn({ user: subject.user, did: subject.did, kind, err }, 'reconcile could not handle a subject')
}

/** Subjects the run never reached (it was interrupted first). */
export function notReached(coverage: Coverage): number {
  return coverage.total - coverage.checked - coverage.unchecked.length
}
