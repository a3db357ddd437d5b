import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'

export interface CodegenPaths {
  /** Folder of lexicon JSON documents (lexicons/). */
  lexicons: string
  /** Folder of generated TypeScript (src/lexicon/), committed and never edited by hand. */
  out: string
}

/** Regenerates `out` from the lexicons, replacing whatever was there. */
export async function generate(paths: CodegenPaths): Promise<void> {
  // Loaded lazily: the builder (and prettier) are development tools, not runtime dependencies.
  const { build } = await import('@atproto/lex-builder')
  await build({
    lexicons: paths.lexicons,
    out: paths.out,
    clear: true,
    indexFile: true,
    // Generated code imports only the small runtime schema package.
    lib: '@atproto/lex-schema',
    // `.ts` specifiers let Node run the sources directly; tsc rewrites them to `.js` in dist/.
    importExt: '.ts',
    pretty: true,
  })
}

/** Lists the files whose committed content differs from a fresh generation (empty: up to date). */
export async function findStale(paths: CodegenPaths): Promise<string[]> {
  const scratch = await mkdtemp(join(tmpdir(), 'moodsync-codegen-'))
  try {
    await generate({ lexicons: paths.lexicons, out: scratch })
    const fresh = await readTree(scratch)
    const committed = await readTree(paths.out)
    const names = new Set([...fresh.keys(), ...committed.keys()])
    return [...names].filter((name) => fresh.get(name) !== committed.get(name)).sort()
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

async function readTree(root: string): Promise<Map<string, string>> {
  const files = new Map<string, string>()
  let entries: string[]
  try {
    entries = await readdir(root, { recursive: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return files
    throw err
  }
  for (const entry of entries) {
    const path = join(root, entry)
    try {
      files.set(relative(root, path), await readFile(path, 'utf8'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw err
    }
  }
  return files
}
