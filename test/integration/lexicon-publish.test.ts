import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeLexiconCommand } from '../../src/cli/commands/lexicon.ts'
import { main } from '../../src/cli/main.ts'
import { loadLexiconDir, sameDoc } from '../../src/lexicon-contract/check.ts'
import { SCHEMA_NSID } from '../../src/lexicon-contract/published.ts'
import { TestNetwork, type TestAccount } from '../../rig/network.ts'
import { sink } from '../../rig/sink.ts'

const NSID = 'computer.aesthetic.mood'


describe('moodsync lexicon publish and check --published, on a real PDS', () => {
  let network: TestNetwork
  let authority: TestAccount
  let env: Record<string, string>
  let dir: string
  /** DNS as the test has it: the authority domain's `_lexicon` TXT record names the authority account. */
  const asked: string[] = []
  const resolveTxt = async (host: string): Promise<string[][]> => {
    asked.push(host)
    if (host === '_lexicon.aesthetic.computer') return [['v=spf1 -all'], [`did=${authority.did}`]]
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
  }

  beforeAll(async () => {
    network = await TestNetwork.start()
    authority = await network.createAccount('authority')
    env = { PDS_URL: network.pdsUrl, PLC_URL: network.plcUrl, LEXICON_AUTHORITY_HANDLE: authority.handle, LEXICON_AUTHORITY_PASSWORD: authority.password }
    dir = await mkdtemp(join(tmpdir(), 'moodsync-lexicon-publish-'))
  })
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
    await network?.stop()
  })

  async function cli(argv: string[], opts: { env?: Record<string, string>; dns?: boolean } = {}): Promise<{ code: number; json: any; out: string; err: string }> {
    const out = sink()
    const err = sink()
    const ctx = { stdout: out.stream, stderr: err.stream, env: opts.env ?? env }
    const code = opts.dns
      ? await makeLexiconCommand({ resolveTxt }).run({ ...ctx, argv: argv.slice(1), signal: new AbortController().signal })
      : await main(argv, ctx)
    let json: unknown
    try {
      json = JSON.parse(out.text())
    } catch {
      json = undefined
    }
    const res = { code, json, out: out.text(), err: err.text() }
    // The authority's password appears in no output, whatever happened.
    expect(res.out + res.err).not.toContain(authority.password)
    return res
  }

  async function schemaRecord(): Promise<{ cid: string; value: Record<string, unknown> }> {
    const got = await authority.agent.com.atproto.repo.getRecord({ repo: authority.did, collection: SCHEMA_NSID, rkey: NSID })
    return { cid: got.data.cid!, value: got.data.value as Record<string, unknown> }
  }

  it('check --published fails while nothing is published', async () => {
    const res = await cli(['lexicon', 'check', '--published', '--did', authority.did, '--json'])
    expect(res.code).toBe(1)
    expect(res.err).toMatch(/has published no com\.atproto\.lexicon\.schema record/)
  })

  let published: { uri: string; cid: string }
  it('publish writes lexicons/ as the schema record (rkey = the NSID), then check --published round-trips by DID and by DNS', async () => {
    const res = await cli(['lexicon', 'publish', '--json'])
    expect(res.err).toBe('')
    expect(res.code).toBe(0)
    expect(res.json.did).toBe(authority.did)
    expect(res.json.published).toHaveLength(1)
    published = res.json.published[0]
    expect(published.uri).toBe(`at://${authority.did}/${SCHEMA_NSID}/${NSID}`)
    expect(res.json.dns).toEqual([{ host: '_lexicon.aesthetic.computer', txt: `did=${authority.did}` }])

    const [local] = await loadLexiconDir('lexicons')
    const record = await schemaRecord()
    expect(record.cid).toBe(published.cid)
    expect(record.value).toEqual({ $type: SCHEMA_NSID, ...local })

    const byDid = await cli(['lexicon', 'check', '--published', '--did', authority.did, '--json'])
    expect(byDid.code).toBe(0)
    expect(byDid.json.ok).toBe(true)
    expect(byDid.json.identical).toEqual([NSID])
    expect(byDid.json.source).toEqual([{ did: authority.did, pds: network.pdsUrl, uri: published.uri, cid: published.cid }])
    // Whether lexicons-published/ still equals what is now published (it does only if lexicons/ equals the pin).
    const [pinned] = await loadLexiconDir('lexicons-published')
    expect(byDid.json.pinnedUpToDate).toEqual(sameDoc(local!, pinned!) ? [NSID] : [])

    const byDns = await cli(['lexicon', 'check', '--published', '--json'], { dns: true })
    expect(byDns.code).toBe(0)
    expect(byDns.json.identical).toEqual([NSID])
    expect(byDns.json.source).toEqual(byDid.json.source)
    expect(asked).toEqual(['_lexicon.aesthetic.computer'])

    // Human output names the record it compared with.
    const human = await cli(['lexicon', 'check', '--published'], { dns: true })
    expect(human.code).toBe(0)
    expect(human.out).toContain(published.uri)
    expect(human.out).toMatch(/compatible both ways with the published record/)
  })

  it('publishing again changes nothing', async () => {
    const res = await cli(['lexicon', 'publish', '--json'])
    expect(res.code).toBe(0)
    expect(res.json.published).toEqual([{ nsid: NSID, uri: published.uri, unchanged: true }])
    expect((await schemaRecord()).cid).toBe(published.cid)
  })

  it('publish refuses lexicons that break the contract, and check --published fails on them', async () => {
    const lexicons = join(dir, 'lexicons')
    await cp('lexicons', lexicons, { recursive: true })
    const file = join(lexicons, 'computer/aesthetic/mood.json')
    const doc = JSON.parse(await readFile(file, 'utf8'))
    doc.defs.main.record.properties.mood.maxLength = 4000
    await writeFile(file, JSON.stringify(doc, null, 2))

    const res = await cli(['lexicon', 'publish', '--lexicons', lexicons, '--json'])
    expect(res.code).toBe(1)
    expect(res.err).toMatch(/refused.*nothing was published/)
    expect(res.json.refused).toBe(true)
    expect(res.json.breaks.map((b: { path: string; kind: string }) => [b.path, b.kind])).toContainEqual(['main.record.properties.mood.maxLength', 'tightened'])
    expect((await schemaRecord()).cid).toBe(published.cid)

    const check = await cli(['lexicon', 'check', '--published', '--lexicons', lexicons, '--json'], { dns: true })
    expect(check.code).toBe(1)
    expect(check.json.ok).toBe(false)
    expect(check.json.breaks.map((b: { kind: string }) => b.kind)).toContain('tightened')
  })

  it('publish needs the authority account, and a wrong password is refused without being shown', async () => {
    const { LEXICON_AUTHORITY_PASSWORD: _password, ...noPassword } = env
    const missing = await cli(['lexicon', 'publish'], { env: noPassword })
    expect(missing.code).toBe(78)
    expect(missing.err).toMatch(/LEXICON_AUTHORITY_PASSWORD/)

    const wrong = `${authority.password}-wrong`
    const refused = await cli(['lexicon', 'publish'], { env: { ...env, LEXICON_AUTHORITY_PASSWORD: wrong } })
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(/createSession: HTTP 401/)
    expect(refused.out + refused.err).not.toContain(wrong)
    expect((await schemaRecord()).cid).toBe(published.cid)
  })
})
