import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

export interface DaemonOptions {
  /** For messages, and the temp folder's name. */
  name: string
  command: string
  /** Given the daemon's own temp folder. */
  args: (dir: string) => string[]
  env?: Record<string, string>
  /** Ready when a stdout line matches (the match is returned), or when `probe` says so. */
  readyLine?: RegExp
  probe?: () => Promise<boolean>
  timeoutMs?: number
  /** A folder to use instead of a fresh temp one (a restart on the same data). */
  dir?: string
  /** Keep stdin open: servers that exit when it closes never outlive us. */
  stdinPipe?: boolean
}

/**
 * One test server process: its own temp folder, started, waited for by its readiness check,
 * and stopped (SIGTERM, then SIGKILL) with its folder removed. Its output is kept (the last
 * 16 KB) for the error when it fails to start or dies.
 */
export class Daemon {
  readonly name: string
  readonly dir: string
  readonly ready: string
  readonly #child: ChildProcess
  readonly #exited: Promise<void>
  readonly #output: { text: string }

  private constructor(name: string, dir: string, ready: string, child: ChildProcess, exited: Promise<void>, output: { text: string }) {
    this.name = name
    this.dir = dir
    this.ready = ready
    this.#child = child
    this.#exited = exited
    this.#output = output
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), `moodsync-${opts.name}-`)))
    const child = spawn(opts.command, opts.args(dir), {
      // An empty cwd of its own: the relay reads a `.env` from its working directory.
      cwd: dir,
      env: { ...process.env, ...opts.env },
      stdio: [opts.stdinPipe ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    })
    const output = { text: '' }
    const keep = (chunk: Buffer) => {
      output.text = (output.text + chunk.toString()).slice(-16_000)
    }
    child.stderr!.on('data', keep)
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    const timeoutMs = opts.timeoutMs ?? 60_000
    try {
      const ready = await new Promise<string>((resolve, reject) => {
        let settled = false
        const done = (err: Error | undefined, value = '') => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (err) reject(err)
          else resolve(value)
        }
        const timer = setTimeout(() => done(new Error(`${opts.name} was not ready within ${timeoutMs / 1000} s:\n${output.text}`)), timeoutMs)
        child.once('error', (err) => done(new Error(`${opts.name} could not start: ${err.message}`, { cause: err })))
        child.once('exit', (code, signal) => done(new Error(`${opts.name} exited (${code ?? signal}) before it was ready:\n${output.text}`)))
        const lines = createInterface({ input: child.stdout! })
        lines.on('line', (line) => {
          keep(Buffer.from(`${line}\n`))
          const match = opts.readyLine?.exec(line)
          if (match) done(undefined, match[1] ?? match[0])
        })
        if (opts.probe) {
          const poll = async () => {
            while (!settled) {
              if (await opts.probe!().catch(() => false)) return done(undefined)
              await new Promise((r) => setTimeout(r, 50))
            }
          }
          void poll()
        }
      })
      return new Daemon(opts.name, dir, ready, child, exited, output)
    } catch (err) {
      child.kill('SIGKILL')
      await exited
      if (!opts.dir) await rm(dir, { recursive: true, force: true })
      throw err
    }
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null
  }

  get output(): string {
    return this.#output.text
  }

  /** Stops the process; its folder is removed unless kept (for a restart on the same data). */
  async stop(opts: { keepData?: boolean; signal?: NodeJS.Signals } = {}): Promise<void> {
    if (this.running) {
      this.#child.kill(opts.signal ?? 'SIGTERM')
      const killer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000)
      await this.#exited
      clearTimeout(killer)
    }
    if (!opts.keepData) await rm(this.dir, { recursive: true, force: true })
  }
}

/** True when `url` answers with one of `statuses`. */
export async function answers(url: string, statuses: readonly number[] = [200], headers?: Record<string, string>): Promise<boolean> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(2_000) })
  await res.body?.cancel()
  return statuses.includes(res.status)
}

/** A free loopback port (there is a small window before the caller binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
