import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const run = promisify(execFile)
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
 * Concurrent builders race harmlessly: each builds into its own scratch folder and renames it
 * into place; the loser's copy is thrown away. While a build runs, a line is printed every
 * 20 s so a first run on a cold machine never looks hung.
 */
export async function cachedBuild(spec: CachedBuild, log: Log = () => {}): Promise<string> {
  const hash = createHash('sha256')
  for (const file of spec.inputs) hash.update(await readFile(file))
  for (const value of spec.extra ?? []) hash.update(value)
  const dir = join(ROOT, '.cache', spec.name, hash.digest('hex').slice(0, 16))
  const product = join(dir, spec.product)
  if (existsSync(product)) return product

  log(`building ${spec.name} (first run only, about ${spec.expect}) into ${dir}`)
  const scratch = `${dir}.${process.pid}.tmp`
  await rm(scratch, { recursive: true, force: true })
  await mkdir(scratch, { recursive: true })
  const started = Date.now()
  const ticker = setInterval(() => log(`  still building ${spec.name}: ${Math.round((Date.now() - started) / 1000)} s`), 20_000)
  try {
    await spec.build(scratch)
    await rename(scratch, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Another process finished first: theirs is as good as ours.
      if (!existsSync(product)) throw err
      await rm(scratch, { recursive: true, force: true })
    })
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
