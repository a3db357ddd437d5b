import { MongoError } from 'mongodb'
import { ConfigError, MoodsyncError, StoreError } from '../errors.ts'
import type { Coverage } from '../reconcile/coverage.ts'
import { STORE_FAILURE } from '../reconcile/failures.ts'
import { UnknownUserError } from '../store/users.ts'
import { UsageError } from './command.ts'

/**
 * Every exit code moodsync returns, in one table (README.md "Exit codes" is this table). The
 * reconcile commands are run by monitoring and cron, which must tell "the data drifted" (1)
 * from "the check could not be completed" (3, 130) and from "the platform is down" (69, 78).
 */
export const EXIT = {
  /** Done; for `status`: every user/repo checked, and in sync. */
  ok: 0,
  /** `status`: drift found. Other commands: something they did failed (a write the PDS refused, a command that failed). */
  failed: 1,
  /** Bad usage: unknown command or option, a bad value, a `--user` nobody has. */
  usage: 2,
  /** Some users/repos could not be checked (or repaired, migrated, read) and are named; the rest are done, with no drift. */
  incomplete: 3,
  /** MongoDB is unreachable or failing (EX_UNAVAILABLE): nothing the report says can be trusted to be complete. */
  unavailable: 69,
  /** An unexpected error, a bug (EX_SOFTWARE). */
  software: 70,
  /** Bad configuration (EX_CONFIG). */
  config: 78,
  /** Interrupted by SIGINT/SIGTERM (128 + SIGINT); the report says how far it got. Run the same command again. */
  interrupted: 130,
} as const

/** How a reconcile run ended, as its exit code needs it. */
export interface RunOutcome {
  interrupted: boolean
  /** Kinds of the users/repos that could not be handled, one entry per kind at least. */
  uncheckedKinds: readonly string[]
  /** Status: drift found. Others: something they did failed. */
  problems: boolean
}

/**
 * The exit code of a reconcile run. The order is the order of what an operator must hear
 * first: they stopped it; MongoDB failed (the counts are then partial at best); drift (or a
 * failure); some users/repos could not be checked; else done.
 */
export function exitForRun(run: RunOutcome): number {
  if (run.interrupted) return EXIT.interrupted
  if (run.uncheckedKinds.includes(STORE_FAILURE)) return EXIT.unavailable
  if (run.problems) return EXIT.failed
  if (run.uncheckedKinds.length > 0) return EXIT.incomplete
  return EXIT.ok
}

/** The exit code of a run over users/repos (status, repair, dedupe, migrate), from its coverage. */
export function exitForCoverage(run: Coverage, problems: boolean): number {
  return exitForRun({ interrupted: run.interrupted, uncheckedKinds: Object.keys(run.uncheckedByKind), problems })
}

/** The exit code of a command that failed outright, by the error's class. */
export function exitForError(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.config
  if (err instanceof UsageError || err instanceof UnknownUserError || (err as { code?: unknown }).code?.toString().startsWith('ERR_PARSE_ARGS')) return EXIT.usage
  if (isStoreFailure(err)) return EXIT.unavailable
  if (err instanceof MoodsyncError) return EXIT.failed
  return EXIT.software
}

/** MongoDB failed: a StoreError, or a driver error that escaped unwrapped (anywhere in the cause chain). */
export function isStoreFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if (e instanceof StoreError || e instanceof MongoError) return true
  }
  return false
}
