import { MongoNetworkError } from 'mongodb'
import { describe, expect, it } from 'vitest'
import { RepoUnavailableError } from '../../src/atproto/repo-reader.ts'
import { UsageError } from '../../src/cli/command.ts'
import { complete, coverageLines } from '../../src/cli/coverage.ts'
import { EXIT, exitForError, exitForRun } from '../../src/cli/exit-codes.ts'
import { ConfigError, MoodsyncError, StoreError } from '../../src/errors.ts'
import { silentLogger } from '../../src/logger.ts'
import { emptyCoverage } from '../../src/reconcile/coverage.ts'
import { forEachSubject } from '../../src/reconcile/each-subject.ts'
import type { ReconcileContext } from '../../src/reconcile/inspect.ts'
import { UnknownUserError, type Subject } from '../../src/store/users.ts'

const ctx = { log: silentLogger } as ReconcileContext
const subjects = (n: number): Subject[] => Array.from({ length: n }, (_, i) => ({ user: `auth0|u${i}`, did: `did:plc:unit${String(i).padStart(20, '0')}` }))
/** Lets every other runner reach its own await first, so concurrent updates interleave. */
const yieldTurns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
}
const capture = () => {
  let text = ''
  return { stream: { write: (chunk: string) => ((text += chunk), true) } as unknown as NodeJS.WritableStream, text: () => text }
}

describe('forEachSubject', () => {
  it('counts every subject and every mood at concurrency 4 (no update lost across awaits)', async () => {
    const list = subjects(25)
    const moodsOf = (s: Subject) => Number(s.user!.slice('auth0|u'.length)) + 1
    const coverage = emptyCoverage(list.length)
    const progress = capture()
    await forEachSubject(ctx, 'status', list, { concurrency: 4, progress: progress.stream }, coverage, async (subject) => {
      await yieldTurns(moodsOf(subject) % 5)
      return moodsOf(subject)
    })
    expect(coverage).toMatchObject({ total: list.length, checked: list.length, interrupted: false, unchecked: [] })
    const moods = list.reduce((n, s) => n + moodsOf(s), 0)
    expect(progress.text()).toContain(`${list.length}/${list.length} users, ${moods} moods`)
  })

  it('names each subject that could not be checked, by kind, apart from the ones checked', async () => {
    const list = subjects(4)
    const coverage = emptyCoverage(list.length)
    await forEachSubject(ctx, 'status', list, { concurrency: 4 }, coverage, async (subject) => {
      await yieldTurns(1)
      if (subject !== list[0]) throw new RepoUnavailableError(subject.did!, 'unresolvable', 'no DID document')
      return 1
    })
    expect(coverage.checked).toBe(1)
    expect(coverage.uncheckedByKind).toEqual({ unresolvable: list.length - 1 })
    expect(coverage.unchecked.map((u) => u.user).sort()).toEqual(list.slice(1).map((s) => s.user).sort())
    expect(complete(coverage)).toBe(false)
    const lines = coverageLines(coverage)
    expect(lines[0]).toBe(`INCOMPLETE: ${list.length - 1} of ${list.length} users/repos could not be checked (unresolvable: ${list.length - 1}):`)
    for (const s of list.slice(1)) expect(lines.join('\n')).toContain(`${s.user} (${s.did}): unresolvable: no DID document`)
  })

  it('an interruption stops the run, says how far it got, and is no subject\'s failure', async () => {
    const list = subjects(30)
    const controller = new AbortController()
    const coverage = emptyCoverage(list.length)
    let started = 0
    await forEachSubject(ctx, 'status', list, { concurrency: 2, signal: controller.signal }, coverage, async () => {
      if (++started === 5) {
        controller.abort()
        // The work in flight fails because of the abort (a retry's wait cut short).
        throw new RepoUnavailableError('did:plc:x', 'unreachable', 'aborted')
      }
      await yieldTurns(1)
      return 1
    })
    expect(coverage.interrupted).toBe(true)
    expect(coverage.unchecked).toEqual([])
    expect(coverage.checked).toBe(started - 1)
    expect(coverageLines(coverage)[0]).toBe(`INTERRUPTED after ${started - 1} of ${list.length} users/repos (${list.length - started + 1} not reached): run the same command again to finish`)
  })

  it('aborted after the last subject, the run is complete', async () => {
    const controller = new AbortController()
    const coverage = emptyCoverage(2)
    await forEachSubject(ctx, 'status', subjects(2), { concurrency: 2, signal: controller.signal }, coverage, async () => 1)
    controller.abort()
    expect(coverage.interrupted).toBe(false)
    expect(complete(coverage)).toBe(true)
  })
})

describe('exit codes', () => {
  it('ranks a run: interrupted, MongoDB failing, drift, unchecked, done', () => {
    expect(exitForRun({ interrupted: true, uncheckedKinds: ['store'], problems: true })).toBe(130)
    expect(exitForRun({ interrupted: false, uncheckedKinds: ['unresolvable', 'store'], problems: true })).toBe(69)
    expect(exitForRun({ interrupted: false, uncheckedKinds: ['unresolvable'], problems: true })).toBe(1)
    expect(exitForRun({ interrupted: false, uncheckedKinds: ['unresolvable'], problems: false })).toBe(3)
    expect(exitForRun({ interrupted: false, uncheckedKinds: [], problems: false })).toBe(0)
  })

  it('maps a command that failed outright by the error\'s class', () => {
    expect(exitForError(new ConfigError('LOG_LEVEL', 'bad'))).toBe(EXIT.config)
    expect(exitForError(new UsageError('bad'))).toBe(EXIT.usage)
    expect(exitForError(new UnknownUserError('no platform user'))).toBe(EXIT.usage)
    expect(exitForError(Object.assign(new TypeError('x'), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' }))).toBe(EXIT.usage)
    const down = new MongoNetworkError('connect ECONNREFUSED 127.0.0.1:1')
    expect(exitForError(new StoreError('cannot prepare MongoDB', { cause: down }))).toBe(EXIT.unavailable)
    expect(exitForError(down)).toBe(EXIT.unavailable)
    expect(exitForError(new MoodsyncError('the command failed'))).toBe(EXIT.failed)
    expect(exitForError(new TypeError('a bug'))).toBe(EXIT.software)
    // Monitoring tells these apart from drift (1) and from "could not check some" (3).
    const notDrift: number[] = [EXIT.ok, EXIT.usage, EXIT.incomplete, EXIT.unavailable, EXIT.software, EXIT.config, EXIT.interrupted]
    expect(notDrift).not.toContain(EXIT.failed)
    expect(new Set(notDrift).size).toBe(notDrift.length)
  })
})
