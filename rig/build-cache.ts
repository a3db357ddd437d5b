import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** What to install for each program the rig runs, said in one line when it is missing. */
const INSTALL: Record<string, string> = {
  go: 'install Go 1.24 or later (https://go.dev/dl/, or apt install golang) and put it on PATH',
  mvn: 'install Maven and a JDK 17 or later (apt install maven openjdk-17-jdk-headless)',
  javac: 'install a JDK 17 or later (apt install openjdk-17-jdk-headless)',
  java: 'install a Java 17 or later runtime (apt install openjdk-17-jre-headless)',
}

/** A program the rig needs is not installed: its message is the one line to act on. */
export class MissingToolError extends Error {
  override name = 'MissingToolError'
}

/** execFile as a promise; a missing program becomes one line saying what to install. */
export const run: typeof execFileAsync = (async (file: string, ...rest: unknown[]) => {
  try {
    return await (execFileAsync as (file: string, ...args: unknown[]) => Promise<unknown>)(file, ...rest)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as { path?: string }).path === file) {
      throw new MissingToolError(`the test rig needs \`${file}\`, which is not on PATH: ${INSTALL[file] ?? 'install it'}`)
    }
    throw err
  }
}) as typeof execFileAsync
export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const RIG = fileURLToPath(new URL('./', import.meta.url))

export type Log = (line: string) => void

export interface CachedBuild {
  /** The folder under .cache/ it lives in, e.g. `tools/relay`. */
  name: string
  /** Files whose bytes decide the build (go.mod, go.sum, sources). */
  inputs: readonly string[]
  /** Other things that decide it, such as the compiler's version. */
  extra?: readonly string[]
  /** What the build leaves in its folder, relative to it: the cache hit test. */
  product: string
  /** Builds into `dir` (an empty scratch folder). */
  build(dir: string): Promise<void>
  /** How long a cold build takes, for the first-run message. */
  expect: string
}

/**
 * Builds once per version of the inputs and caches the result under .cache/<name>/<hash>/.
 * One process builds at a time (a lock folder holding its pid); the others wait for its result,
 * so a build started while npm installs (package.json) is not repeated by the tests or the demo.
 * Each build goes into a scratch folder renamed into place, so a half-built one is never used.
 * While a build runs, a line is printed every 20 s so a first run on a cold machine never looks
 * hung.
 */
export async function cachedBuild(spec: CachedBuild, log: Log = () => {}): Promise<string> {
  const hash = createHash('sha256')
  for (const file of spec.inputs) hash.update(await readFile(file))
  for (const value of spec.extra ?? []) hash.update(value)
  const dir = join(ROOT, '.cache', spec.name, hash.digest('hex').slice(0, 16))
  const product = join(dir, spec.product)
  for (let waited = false; ; waited = true) {
    if (existsSync(product)) return product
    if (await takeLock(`${dir}.lock`)) break
    if (!waited) log(`waiting for another process building ${spec.name} into ${dir}`)
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  try {
    // It may have finished between our look and our lock.
    if (existsSync(product)) return product
    return await build(spec, dir, product, log)
  } finally {
    await rm(`${dir}.lock`, { recursive: true, force: true })
  }
}

/** True when we hold it now; a lock whose process is gone is taken over. */
async function takeLock(lock: string): Promise<boolean> {
  await mkdir(join(lock, '..'), { recursive: true })
  try {
    await mkdir(lock)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const holder = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => ''))
    if (holder > 0 && alive(holder)) return false
    // Not yet written (a lock a moment old) or left by a process that died.
    if (!holder && Date.now() - (await stampOf(lock)) < 5_000) return false
    await rm(lock, { recursive: true, force: true })
    return false
  }
  await writeFile(join(lock, 'pid'), String(process.pid))
  return true
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function stampOf(path: string): Promise<number> {
  return (await stat(path).catch(() => ({ mtimeMs: 0 }))).mtimeMs
}

async function build(spec: CachedBuild, dir: string, product: string, log: Log): Promise<string> {
  log(`building ${spec.name} (first run only, about ${spec.expect}) into ${dir}`)
  const scratch = `${dir}.${process.pid}.tmp`
  await rm(scratch, { recursive: true, force: true })
  await mkdir(scratch, { recursive: true })
  const started = Date.now()
  const ticker = setInterval(() => log(`  still building ${spec.name}: ${Math.round((Date.now() - started) / 1000)} s`), 20_000)
  try {
    await spec.build(scratch)
    await rm(dir, { recursive: true, force: true })
    await rename(scratch, dir)
  } catch (err) {
    await rm(scratch, { recursive: true, force: true })
    throw err
  } finally {
    clearInterval(ticker)
  }
  log(`built ${spec.name} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return product
}

let goVersion: Promise<string> | undefined
/** `go env GOVERSION`, asked once. */
export function goVersionOf(): Promise<string> {
  goVersion ??= run('go', ['env', 'GOVERSION']).then((r) => r.stdout.trim())
  return goVersion
}

/**
 * `go build` in `cwd` with the module's committed go.sum only (the proxy here lists no
 * versions). No VCS stamp: the wrapper modules sit inside our checkout, whose git state is
 * not the program's.
 */
export async function goBuild(cwd: string, out: string, packages: readonly string[], env: Record<string, string> = {}): Promise<void> {
  await run('go', ['build', '-trimpath', '-o', out, ...packages], {
    cwd,
    env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=readonly -buildvcs=false', ...env },
    maxBuffer: 64 * 1024 * 1024,
  })
}
