import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Lexicons } from '@atproto/lexicon'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { checkContract, loadLexiconDir, type ContractReport, type Deviation } from '../../src/lexicon-contract/check.ts'
import { CORPUS } from '../../src/lexicon-contract/corpus.ts'
import { authorityDomain, resolveLexiconDid } from '../../src/lexicon-contract/published.ts'
import { sink } from '../../rig/sink.ts'

const NSID = 'computer.aesthetic.mood'
const FILE = 'computer/aesthetic/mood.json'


async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = sink()
  const err = sink()
  const code = await main(argv, { stdout: out.stream, stderr: err.stream, env: {} })
  return { code, out: out.text(), err: err.text() }
}

type Doc = { defs: { main: { key: string; record: { required: string[]; properties: Record<string, Record<string, unknown>> } } } }

describe('moodsync lexicon check', () => {
  let dir: string
  let n = 0
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'moodsync-lexicon-test-'))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  /** A copy of lexicons/ with one change, and a copy of lexicons-published/ (deviations replaceable). */
  async function variant(change: (doc: Doc) => void, deviations?: Deviation[]): Promise<{ lexicons: string; pinned: string }> {
    const root = join(dir, `v${++n}`)
    await cp('lexicons', join(root, 'lexicons'), { recursive: true })
    await cp('lexicons-published', join(root, 'pinned'), { recursive: true })
    const file = join(root, 'lexicons', FILE)
    const doc = JSON.parse(await readFile(file, 'utf8')) as Doc
    change(doc)
    await writeFile(file, JSON.stringify(doc, null, 2))
    if (deviations) await writeFile(join(root, 'pinned', 'deviations.json'), JSON.stringify({ deviations }))
    return { lexicons: join(root, 'lexicons'), pinned: join(root, 'pinned') }
  }

  async function checkJson(paths: { lexicons: string; pinned: string }): Promise<{ code: number; report: ContractReport; err: string }> {
    const res = await run(['lexicon', 'check', '--lexicons', paths.lexicons, '--pinned', paths.pinned, '--json'])
    return { code: res.code, report: JSON.parse(res.out) as ContractReport, err: res.err }
  }

  it('passes on the tree: lexicons/ is compatible both ways with the pinned copy', async () => {
    const res = await run(['lexicon', 'check'])
    expect(res.err).toBe('')
    expect(res.code).toBe(0)
    expect(res.out).toMatch(/compatible both ways/)
    const json = await checkJson({ lexicons: 'lexicons', pinned: 'lexicons-published' })
    expect(json.code).toBe(0)
    expect(json.report.compared).toEqual([NSID])
    expect(json.report.breaks).toEqual([])
    expect(json.report.differences).toEqual([])
    expect(json.report.staleDeviations).toEqual([])
    expect(json.report.corpusRecords).toBe(CORPUS[NSID]!.length)
  })

  it('the corpus says what the published schema answers, and its byte edges are where their names say', async () => {
    const published = new Lexicons((await loadLexiconDir('lexicons-published')) as never)
    for (const entry of CORPUS[NSID]!) {
      const res = published.validate(NSID, entry.record)
      expect({ name: entry.name, verdict: res.success ? 'valid' : 'invalid' }).toEqual({ name: entry.name, verdict: entry.published })
      const size = /-(\d+)-bytes$/.exec(entry.name)
      if (size) expect({ name: entry.name, bytes: Buffer.byteLength(entry.record.mood as string, 'utf8') }).toEqual({ name: entry.name, bytes: Number(size[1]) })
    }
    const names = CORPUS[NSID]!.map((e) => e.name)
    expect(new Set(names).size).toBe(names.length)
  })

  const breaks: Array<[string, (doc: Doc) => void, { path: string; kind: string }]> = [
    ['a new required field', (d) => { d.defs.main.record.properties.color = { type: 'string' }; d.defs.main.record.required.push('color') }, { path: 'main.record.properties.color', kind: 'new-required' }],
    ['a removed field', (d) => { delete d.defs.main.record.properties.when; d.defs.main.record.required = d.defs.main.record.required.filter((f) => f !== 'when') }, { path: 'main.record.properties.when', kind: 'removed-field' }],
    ['a renamed field', (d) => { const p = d.defs.main.record.properties; p.reference = p.ref!; delete p.ref; d.defs.main.record.required = d.defs.main.record.required.map((f) => (f === 'ref' ? 'reference' : f)) }, { path: 'main.record.properties.ref', kind: 'renamed-field' }],
    ['a changed type', (d) => { d.defs.main.record.properties.mood = { type: 'integer' } }, { path: 'main.record.properties.mood', kind: 'changed-type' }],
    ['a tightened bound', (d) => { d.defs.main.record.properties.mood!.maxLength = 4000 }, { path: 'main.record.properties.mood.maxLength', kind: 'tightened' }],
    ['a loosened bound', (d) => { d.defs.main.record.properties.mood!.maxLength = 6000 }, { path: 'main.record.properties.mood.maxLength', kind: 'loosened' }],
    ['a bound dropped', (d) => { delete d.defs.main.record.properties.mood!.maxLength }, { path: 'main.record.properties.mood.maxLength', kind: 'loosened' }],
    ['a new bound', (d) => { d.defs.main.record.properties.mood!.maxGraphemes = 1000 }, { path: 'main.record.properties.mood.maxGraphemes', kind: 'tightened' }],
    ['a dropped format', (d) => { delete d.defs.main.record.properties.when!.format }, { path: 'main.record.properties.when.format', kind: 'loosened' }],
    ['a required field made optional', (d) => { d.defs.main.record.required = d.defs.main.record.required.filter((f) => f !== 'ref') }, { path: 'main.record.properties.ref', kind: 'now-optional' }],
    ['a field lexicons/ added made required', (d) => { d.defs.main.record.required.push('mongoId') }, { path: 'main.record.properties.mongoId', kind: 'new-required' }],
    ['a changed key type (loosened)', (d) => { d.defs.main.key = 'any' }, { path: 'main.key', kind: 'loosened' }],
    ['a changed key type', (d) => { d.defs.main.key = 'nsid' }, { path: 'main.key', kind: 'changed' }],
  ]

  it.each(breaks)('fails on %s, naming the rule and the path', async (_what, change, expected) => {
    const { code, report, err } = await checkJson(await variant(change))
    expect(code).toBe(1)
    expect(report.ok).toBe(false)
    expect(report.breaks.map((b) => ({ path: b.path, kind: b.kind }))).toContainEqual(expected)
    expect(err).toMatch(/breaks compatibility/)
  })

  it('allows what the rules allow: a new optional field, a new description', async () => {
    const { code, report } = await checkJson(await variant((d) => {
      d.defs.main.record.properties.color = { type: 'string', maxLength: 64 }
      d.defs.main.record.properties.mood!.description = 'reworded'
    }))
    expect(report.breaks).toEqual([])
    expect(code).toBe(0)
  })

  it('detects the records one schema accepts and the other refuses', async () => {
    const { report } = await checkJson(await variant((d) => { d.defs.main.record.properties.mood!.maxLength = 4000 }))
    const names = report.differences.map((d) => d.entry)
    expect(names).toContain('ascii-5000-bytes')
    expect(names).toContain('emoji-5000-bytes')
    expect(names).not.toContain('ascii-5001-bytes') // refused by both
    // Tightening: every difference is a record the published schema takes and lexicons/ refuses.
    for (const d of report.differences) expect({ local: d.local, published: d.published }).toEqual({ local: 'invalid', published: 'valid' })
  })

  it('fails on an optional published field made required, and on a nullable one no longer nullable', () => {
    const published = { lexicon: 1, id: NSID, defs: { main: { type: 'record', key: 'tid', record: { type: 'object', required: ['mood'], nullable: ['note'], properties: { mood: { type: 'string' }, note: { type: 'string' } } } } } }
    const local = structuredClone(published)
    local.defs.main.record.required.push('note')
    local.defs.main.record.nullable = []
    const report = checkContract({ local: [local], published: [published], corpus: {} })
    expect(report.breaks.map((b) => [b.path, b.kind])).toEqual([['main.record.properties.note', 'now-required'], ['main.record.properties.note.nullable', 'tightened']])
  })

  it('a difference the rules cannot see still fails through the corpus', () => {
    const published = { lexicon: 1, id: NSID, defs: { main: { type: 'record', key: 'tid', record: { type: 'object', properties: { mood: { type: 'string' } } } } } }
    // Same rules, but a corpus record whose meaning a reader-side detail changes: an enum added on a new optional field.
    const local = structuredClone(published) as typeof published & { defs: { main: { record: { properties: Record<string, unknown> } } } }
    local.defs.main.record.properties.tone = { type: 'string', enum: ['calm'] }
    const corpus = { [NSID]: [{ name: 'tone-loud', note: 'a field the published schema does not name', record: { mood: 'hi', tone: 'loud' }, published: 'valid' as const }] }
    const report = checkContract({ local: [local], published: [published], corpus })
    expect(report.breaks).toEqual([])
    expect(report.differences.map((d) => [d.entry, d.local, d.published])).toEqual([['tone-loud', 'invalid', 'valid']])
    expect(report.ok).toBe(false)
  })

  it('an intended deviation excuses exactly its difference, and the tree\'s deviation is still needed', async () => {
    // The tree: its one deviation excuses the one difference, and without it the check fails.
    const tree = await checkJson({ lexicons: 'lexicons', pinned: 'lexicons-published' })
    const treeDeviations = JSON.parse(await readFile('lexicons-published/deviations.json', 'utf8')).deviations as Deviation[]
    expect(tree.report.excused.map((e) => ('entry' in e ? e.entry : e.path))).toEqual(treeDeviations.map((d) => ('corpus' in d ? d.corpus : d.rule.path)))
    const without = await checkJson(await variant(() => {}, []))
    expect(without.code).toBe(1)
    expect(without.report.differences.map((d) => d.entry)).toEqual(treeDeviations.map((d) => ('corpus' in d ? d.corpus : '')))

    // A tightened bound: excusing the rule break and one record leaves the other records failing.
    const tightened = (d: Doc) => { d.defs.main.record.properties.mood!.maxLength = 4000 }
    const all = (await checkJson(await variant(tightened))).report
    const excuses: Deviation[] = [
      ...treeDeviations,
      { nsid: NSID, rule: { path: 'main.record.properties.mood.maxLength', kind: 'tightened' }, reason: 'test: shorter moods' },
      { nsid: NSID, corpus: 'ascii-5000-bytes', local: 'invalid', published: 'valid', reason: 'test: this record only' },
    ]
    const some = await checkJson(await variant(tightened, excuses))
    expect(some.report.breaks).toEqual([])
    expect(some.report.differences.map((d) => d.entry)).toEqual(all.differences.map((d) => d.entry).filter((e) => e !== 'ascii-5000-bytes'))
    expect(some.report.excused.map((e) => e.reason)).toEqual(expect.arrayContaining(['test: shorter moods', 'test: this record only']))
    expect(some.code).toBe(1)

    // A deviation whose verdicts do not match the difference excuses nothing, and is stale.
    const wrong: Deviation = { nsid: NSID, corpus: 'ascii-5000-bytes', local: 'valid', published: 'invalid', reason: 'test: the other direction' }
    const stale = await checkJson(await variant(() => {}, [...treeDeviations, wrong]))
    expect(stale.code).toBe(1)
    expect(stale.report.differences).toEqual([])
    expect(stale.report.staleDeviations).toEqual([wrong])
  })

  it('refuses a deviation without a reason', async () => {
    const res = await run(['lexicon', 'check', ...Object.entries(await variant(() => {}, [{ nsid: NSID, corpus: 'plain', local: 'valid', published: 'invalid', reason: '' }])).flatMap(([k, v]) => [`--${k}`, v])])
    expect(res.code).toBe(1)
    expect(res.err).toMatch(/needs nsid, a reason/)
  })

  it('says which subcommand it wants', async () => {
    expect((await run(['lexicon'])).code).toBe(2)
    expect((await run(['lexicon', 'frobnicate'])).code).toBe(2)
    expect((await run(['lexicon', 'check', '--did', 'did:plc:x'])).code).toBe(2)
  })
})

describe('lexicon authority through DNS', () => {
  it('is the NSID without its name, reversed', () => {
    expect(authorityDomain(NSID)).toBe('aesthetic.computer')
    expect(authorityDomain('com.example.fancy.thing')).toBe('fancy.example.com')
    expect(() => authorityDomain('mood')).toThrow(/not an NSID/)
  })

  it('reads the did= TXT record at _lexicon.<authority>, and refuses none or two', async () => {
    const asked: string[] = []
    const dns = (records: string[][]) => async (host: string) => (asked.push(host), records)
    expect(await resolveLexiconDid(NSID, dns([['v=spf1 -all'], ['did=did:plc:', 'abc123']]))).toBe('did:plc:abc123')
    expect(asked).toEqual(['_lexicon.aesthetic.computer'])
    await expect(resolveLexiconDid(NSID, dns([['hello']]))).rejects.toThrow(/no "did=" record/)
    await expect(resolveLexiconDid(NSID, dns([['did=did:plc:a'], ['did=did:plc:b']]))).rejects.toThrow(/ambiguous/)
    await expect(resolveLexiconDid(NSID, async () => { throw Object.assign(new Error('queryTxt ENOTFOUND'), { code: 'ENOTFOUND' }) })).rejects.toThrow(/ENOTFOUND/)
  })
})
