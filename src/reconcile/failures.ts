import { MongoError } from 'mongodb'
import { RepoUnavailableError } from '../atproto/repo-reader.ts'
import { PdsError } from '../atproto/xrpc.ts'
import { InactiveAccountError, NoCredentialsError, StoreError, WrongSecretError } from '../errors.ts'

/**
 * The kind of a failure while handling one subject, decided by class, so a run reports them
 * by kind and goes on. `store` (MongoDB) is the one the CLI gives an exit code of its own:
 * the other kinds are about one user's repo, `store` about the platform's database.
 */
export function failureKind(err: unknown): string {
  if (err instanceof RepoUnavailableError) return err.kind
  if (err instanceof PdsError) return err.status === 429 ? 'rate-limited' : 'pds'
  if (err instanceof NoCredentialsError) return 'no-credentials'
  if (err instanceof WrongSecretError) return 'wrong-secret'
  if (err instanceof InactiveAccountError) return 'inactive'
  if (err instanceof StoreError || err instanceof MongoError) return STORE_FAILURE
  return 'error'
}

/** The kind that means MongoDB itself failed (unreachable, or refusing operations). */
export const STORE_FAILURE = 'store'
