/**
 * What an account's status means for its records, decided once for the stream, the backfill
 * and the reconcile commands: an inactive account's records are hidden (they come back with
 * it), a deleted account's are deleted, an active one's restored.
 */
export const INACTIVE_STATUSES: ReadonlySet<string> = new Set(['deactivated', 'takendown', 'suspended'])

export type AccountAction = 'restore' | 'delete' | 'hide' | 'ignore'

export function isInactive(status: string | undefined): boolean {
  return status !== undefined && INACTIVE_STATUSES.has(status)
}

export function accountAction(active: boolean, status: string | undefined): AccountAction {
  if (active) return 'restore'
  if (status === 'deleted') return 'delete'
  if (isInactive(status)) return 'hide'
  // desynchronized, throttled, or a status this version does not know: nothing to change.
  return 'ignore'
}
