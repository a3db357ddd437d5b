import { randomUUID } from 'node:crypto'

/**
 * A `ref` as another client may put it: the published schema requires one, and it attaches to a
 * MongoDB document only when it names a mood of the same user. Unique, so two records never
 * share one (records sharing a ref are duplicates to `dedupe`).
 */
export function clientRef(): string {
  return `client:${randomUUID()}`
}
