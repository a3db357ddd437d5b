import { Writable } from 'node:stream'
import { main } from '../src/cli/main.ts'

export interface CliRun {
  code: number
  out: string
  err: string
}

/**
 * Runs the moodsync CLI in-process with `env`, capturing stdout and stderr. `signal`, when
 * given, interrupts the command as SIGINT would (main's `io.signal`).
 */
export function cliRunner(env: () => Record<string, string>, opts: { signal?: () => AbortSignal | undefined } = {}) {
  const run = async (...argv: string[]): Promise<CliRun> => {
    let out = ''
    let err = ''
    const stdout = new Writable({ write: (c, _e, done) => ((out += c.toString()), done()) })
    const stderr = new Writable({ write: (c, _e, done) => ((err += c.toString()), done()) })
    const code = await main(argv, { stdout, stderr, env: env(), signal: opts.signal?.() })
    return { code, out, err }
  }
  /** The same with --json, parsed; the exit code rides along. */
  const json = async <T,>(...argv: string[]): Promise<T & { code: number }> => {
    const res = await run(...argv, '--json')
    try {
      return { ...(JSON.parse(res.out) as T), code: res.code }
    } catch {
      throw new Error(`not JSON (exit ${res.code}): ${res.out}\n${res.err}`)
    }
  }
  return { run, json }
}
