import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const SOURCE_DIR = fileURLToPath(new URL('./ferretdb/', import.meta.url))
const ROOT = fileURLToPath(new URL('../', import.meta.url))

/**
 * Builds our FerretDB wrapper (rig/ferretdb, Go) once per source version and caches the
 * binary under .cache/ferretdb/<hash>/. Concurrent builders race harmlessly: each renames
 * its own complete binary into place.
 */
export async function buildFerretDb(log: (line: string) => void = () => {}): Promise<string> {
  const hash = createHash('sha256')
  for (const file of ['go.mod', 'go.sum', 'main.go']) hash.update(await readFile(join(SOURCE_DIR, file)))
  const { stdout: goVersion } = await run('go', ['env', 'GOVERSION'])
  hash.update(goVersion)
  const binary = join(ROOT, '.cache', 'ferretdb', hash.digest('hex').slice(0, 16), 'ferretdb')
  if (existsSync(binary)) return binary

  log(`building the FerretDB test server (Go, first run only: a few minutes) into ${binary}`)
  await mkdir(dirname(binary), { recursive: true })
  const partial = `${binary}.${process.pid}.tmp`
  const started = Date.now()
  await run('go', ['build', '-trimpath', '-o', partial, '.'], {
    cwd: SOURCE_DIR,
    env: { ...process.env, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly' },
    maxBuffer: 16 * 1024 * 1024,
  })
  await rename(partial, binary)
  log(`built FerretDB in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return binary
}

/** A FerretDB (SQLite backend) on 127.0.0.1, data in a temp folder removed on stop. */
export class FerretDbServer {
  readonly uri: string
  readonly #child: ChildProcess
  readonly #dir: string
  readonly #exited: Promise<void>

  private constructor(uri: string, child: ChildProcess, dir: string, exited: Promise<void>) {
    this.uri = uri
    this.#child = child
    this.#dir = dir
    this.#exited = exited
  }

  static async start(opts: { binary?: string; port?: number; dir?: string } = {}): Promise<FerretDbServer> {
    const binary = opts.binary ?? (await buildFerretDb())
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'moodsync-ferretdb-')))
    const child = spawn(binary, ['-dir', dir, '-listen', `127.0.0.1:${opts.port ?? 0}`], {
      // stdin stays open: the server exits when it closes, so it never outlives us.
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000)
    })
    const uri = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`FerretDB did not start within 30 s: ${stderr}`)), 30_000)
      const lines = createInterface({ input: child.stdout! })
      lines.on('line', (line) => {
        const match = /^FERRETDB_READY (\S+)/.exec(line)
        if (match) {
          clearTimeout(timer)
          resolve(match[1]!)
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`FerretDB exited with code ${code} before it was ready: ${stderr}`))
      })
    })
    return new FerretDbServer(uri, child, dir, exited)
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its data unless kept. */
  async stop(opts: { keepData?: boolean } = {}): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill('SIGTERM')
      const killer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000)
      await this.#exited
      clearTimeout(killer)
    }
    if (!opts.keepData) await rm(this.#dir, { recursive: true, force: true })
  }

  get dataDir(): string {
    return this.#dir
  }
}
