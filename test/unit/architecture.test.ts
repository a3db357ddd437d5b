import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// The house rules of docs/ARCHITECTURE.md, checked on the sources themselves.
const SRC = fileURLToPath(new URL('../../src/', import.meta.url))
const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => join(SRC, f))

/** A file's room: its first folder under src/, or '.' for the ground-floor files. */
function roomOf(file: string): string {
  const rel = relative(SRC, file).split('/')
  return rel.length === 1 ? '.' : rel[0]!
}

/** Relative imports (static, dynamic, re-exports) of one file, resolved to files under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!)
  return specs.map((spec) => resolve(dirname(file), spec)).filter((target) => target.startsWith(SRC))
}

/** room -> rooms it imports, with one example file each, for the failure message. */
function roomGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>()
  for (const file of files) {
    // The package entry re-exports every room by design: it is the library's public face.
    if (relative(SRC, file) === 'index.ts') continue
    const from = roomOf(file)
    for (const target of importsOf(file)) {
      const to = roomOf(target)
      if (to === from) continue
      const edges = graph.get(from) ?? new Map<string, string>()
      edges.set(to, edges.get(to) ?? `${relative(SRC, file)} -> ${relative(SRC, target)}`)
      graph.set(from, edges)
    }
  }
  return graph
}

describe('architecture', () => {
  it('sees the sources (the check itself works)', () => {
    expect(files.length).toBeGreaterThan(40)
    expect(roomGraph().get('ingest')?.has('store')).toBe(true)
  })

  it('touches MongoDB collections only in src/store/', () => {
    const outside = files.filter((file) => roomOf(file) !== 'store' && /\.collection\s*[<(]/.test(readFileSync(file, 'utf8')))
    expect(outside.map((f) => relative(SRC, f))).toEqual([])
  })

  it('has no two rooms importing each other, nor any longer cycle', () => {
    const graph = roomGraph()
    const mutual: string[] = []
    for (const [from, edges] of graph) {
      for (const to of edges.keys()) if (from < to && graph.get(to)?.has(from)) mutual.push(`${edges.get(to)} / ${graph.get(to)!.get(from)}`)
    }
    expect(mutual).toEqual([])
    // Depth-first search for any cycle among rooms.
    const state = new Map<string, 'open' | 'done'>()
    const cycles: string[] = []
    const visit = (room: string, path: string[]) => {
      if (state.get(room) === 'done') return
      if (state.get(room) === 'open') {
        cycles.push([...path.slice(path.indexOf(room)), room].join(' -> '))
        return
      }
      state.set(room, 'open')
      for (const next of graph.get(room)?.keys() ?? []) visit(next, [...path, room])
      state.set(room, 'done')
    }
    for (const room of graph.keys()) visit(room, [])
    expect(cycles).toEqual([])
  })

  it('keeps the ground floor free of the rooms above it', () => {
    const upward = [...(roomGraph().get('.') ?? new Map<string, string>())].filter(([to]) => to !== 'lexicon').map(([, example]) => example)
    expect(upward).toEqual([])
  })

  it('reads process.env and exits only in the CLI', () => {
    const offenders = files.filter((file) => {
      if (roomOf(file) === 'cli') return false
      const code = readFileSync(file, 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '')
      return /process\.env\b|process\.exit\s*\(/.test(code)
    })
    expect(offenders.map((f) => relative(SRC, f))).toEqual([])
  })

  it('never adds an awaited value onto shared state in one expression (`report.x += await f()` loses updates)', () => {
    // `a.b += await f()` reads a.b before the await and writes back that stale value plus the
    // result: concurrent runs (the reconcile commands' subjects) overwrite each other's counts.
    // Await into a local first, then add.
    const offenders: string[] = []
    for (const file of files) {
      const lines = readFileSync(file, 'utf8').split('\n')
      lines.forEach((line, i) => {
        if (/^\s*(\*|\/\/|\/\*)/.test(line)) return // comments may show the pattern
        if (/[\w\])]\.[\w$]+(?:\[[^\]]+\])?\s*(?:\+|-|\*|\|\||\?\?)=\s*\(?\s*await\b/.test(line)) offenders.push(`${relative(SRC, file)}:${i + 1}: ${line.trim()}`)
      })
    }
    expect(offenders).toEqual([])
  })

  it('depends at run time on exactly what src/ imports (the rest is development only)', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
    const imported = new Set<string>()
    for (const file of files) {
      // Static imports only: src/codegen loads the (development) lexicon builder lazily.
      for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)[^'"]*from\s+['"]([^.'"\s][^'"\s]*)['"]/gm)) {
        const spec = m[1]!
        if (spec.startsWith('node:')) continue
        imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
      }
    }
    expect(Object.keys(pkg.dependencies).sort()).toEqual([...imported].sort())
  })

  it('keeps every writer file under 300 lines', () => {
    const long = files.filter((f) => roomOf(f) === 'writer').filter((f) => readFileSync(f, 'utf8').split('\n').length > 300)
    expect(long.map((f) => relative(SRC, f))).toEqual([])
  })

  it('loads in plain Node, as bin/moodsync.js runs it (no syntax only the test transform knows)', () => {
    const imports = files.map((file) => `await import(${JSON.stringify(file)})`).join(';')
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', imports], { encoding: 'utf8', timeout: 60_000 })
    expect(res.stderr).toBe('')
    expect(res.status).toBe(0)
  })
})
