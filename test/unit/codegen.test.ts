import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { findStale, generate } from '../../src/codegen/codegen.ts'
import { sink } from '../../rig/sink.ts'


describe('codegen', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'moodsync-codegen-test-'))
    await cp('lexicons', join(dir, 'lexicons'), { recursive: true })
    await cp('src/lexicon', join(dir, 'out'), { recursive: true })
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it('the committed src/lexicon is up to date (moodsync codegen --check exits 0)', async () => {
    expect(await findStale({ lexicons: 'lexicons', out: 'src/lexicon' })).toEqual([])
    const out = sink()
    expect(await main(['codegen', '--check'], { stdout: out.stream, env: {} })).toBe(0)
    expect(out.text()).toMatch(/up to date/)
  })

  it('generated files say they are generated', async () => {
    const text = await readFile('src/lexicon/computer/aesthetic/mood.defs.ts', 'utf8')
    expect(text).toMatch(/GENERATED.*DO NOT EDIT/)
  })

  it('--check fails, naming the file, when the lexicon changes without regenerating', async () => {
    const paths = { lexicons: join(dir, 'lexicons'), out: join(dir, 'out') }
    const file = join(paths.lexicons, 'computer/aesthetic/mood.json')
    const doc = JSON.parse(await readFile(file, 'utf8'))
    doc.defs.main.record.properties.mood.maxGraphemes = 4000
    await writeFile(file, JSON.stringify(doc, null, 2))

    expect(await findStale(paths)).toEqual(['computer/aesthetic/mood.defs.ts'])
    const out = sink()
    const err = sink()
    const code = await main(['codegen', '--check', '--lexicons', paths.lexicons, '--out', paths.out], { stdout: out.stream, stderr: err.stream, env: {} })
    expect(code).toBe(1)
    expect(err.text()).toMatch(/stale \(computer\/aesthetic\/mood\.defs\.ts\).*run "moodsync codegen"/)

    await generate(paths)
    expect(await findStale(paths)).toEqual([])
    expect(await readFile(join(paths.out, 'computer/aesthetic/mood.defs.ts'), 'utf8')).toMatch(/maxGraphemes: 4000/)
  })

  it('--check notices a hand edit and a stray file in the generated folder', async () => {
    const paths = { lexicons: 'lexicons', out: join(dir, 'edited') }
    await cp('src/lexicon', paths.out, { recursive: true })
    await writeFile(join(paths.out, 'index.ts'), '// edited by hand\n', { flag: 'a' })
    await writeFile(join(paths.out, 'stray.ts'), 'export {}\n')
    expect(await findStale(paths)).toEqual(['index.ts', 'stray.ts'])
  })
})
