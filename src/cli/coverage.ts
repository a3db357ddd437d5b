import { notReached, type Coverage } from '../reconcile/coverage.ts'

/** Users/repos named in a human report; `--json` lists every one. */
const NAMED = 20

/** Counts by kind, e.g. "unresolvable: 3, unreachable: 1". */
export function byKind(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([kind, n]) => `${kind}: ${n}`)
    .join(', ')
}

/**
 * What a report must say before anything it found: that the run was interrupted, or that some
 * users/repos could not be checked. Nothing when every subject was handled. A run that says
 * nothing here may call itself complete; one that says something must not.
 */
export function coverageLines(run: Coverage, done = 'checked'): string[] {
  const lines: string[] = []
  if (run.interrupted) lines.push(`INTERRUPTED after ${run.checked + run.unchecked.length} of ${run.total} users/repos (${notReached(run)} not reached): run the same command again to finish`)
  if (run.unchecked.length > 0) {
    lines.push(`INCOMPLETE: ${run.unchecked.length} of ${run.total} users/repos could not be ${done} (${byKind(run.uncheckedByKind)}):`)
    for (const u of run.unchecked.slice(0, NAMED)) lines.push(`  ${nameOf(u)}: ${u.kind}: ${reason(u)}`)
    if (run.unchecked.length > NAMED) lines.push(`  … ${run.unchecked.length - NAMED} more (--json lists all)`)
  }
  return lines
}

function nameOf(u: Coverage['unchecked'][number]): string {
  const did = u.did === null ? '' : u.handle ? `${u.did} @${u.handle}` : u.did
  return u.user === null ? did || '?' : u.did === null ? u.user : `${u.user} (${did})`
}

/** The message without the "DID: kind: " a repo read's error starts with (the line says both already). */
function reason(u: Coverage['unchecked'][number]): string {
  const prefix = `${u.did}: ${u.kind}: `
  return u.message.startsWith(prefix) ? u.message.slice(prefix.length) : u.message
}

/** Whether the run handled every subject: only then may a report say "in sync" or "done". */
export function complete(run: Coverage): boolean {
  return !run.interrupted && run.unchecked.length === 0 && run.checked === run.total
}
