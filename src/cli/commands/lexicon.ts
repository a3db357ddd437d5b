import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parseConfig, requireLexiconAuthority } from '../../config.ts'
import { checkContract, describeReport, loadDeviations, loadLexiconDir, sameDoc, type ContractReport } from '../../lexicon-contract/check.ts'
import type { LexiconDoc } from '../../lexicon-contract/evolution.ts'
import {
  authorityDomain,
  currentPublication,
  fetchPublishedLexicon,
  loginAuthority,
  putSchemaRecord,
  type PublishedLexicon,
  type ResolveTxt,
} from '../../lexicon-contract/published.ts'
import { UsageError, type Command, type CommandContext } from '../command.ts'
import { report } from '../output.ts'

/** The package's own folders (src/cli/commands/ and dist/cli/commands/ are both three below the root). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const DEFAULT_LEXICONS = join(ROOT, 'lexicons')
const DEFAULT_PINNED = join(ROOT, 'lexicons-published')

export interface LexiconCommandDeps {
  /** DNS TXT lookups for `_lexicon.<authority>` (default node:dns/promises resolveTxt). */
  resolveTxt?: ResolveTxt
  fetch?: typeof globalThis.fetch
}

const USAGE = [
  'moodsync lexicon check [--published [--did DID]] [--lexicons DIR] [--pinned DIR] [--json]',
  '       moodsync lexicon publish [--lexicons DIR] [--pinned DIR] [--json]   (LEXICON_AUTHORITY_HANDLE, LEXICON_AUTHORITY_PASSWORD, PDS_URL)',
].join('\n')

/** `moodsync lexicon`, with its network seams injectable (tests give DNS answers). */
export function makeLexiconCommand(deps: LexiconCommandDeps = {}): Command {
  return {
    name: 'lexicon',
    summary: 'check lexicons/ against the published schema (evolution rules, record corpus); publish it as the authority',
    usage: USAGE,
    async run(ctx) {
      const [sub, ...argv] = ctx.argv
      if (sub === 'check') return check(ctx, argv, deps)
      if (sub === 'publish') return publish(ctx, argv, deps)
      throw new UsageError(sub === undefined ? 'which: check or publish?' : `unknown subcommand "${sub}" (check or publish)`)
    },
  }
}

export const lexicon: Command = makeLexiconCommand()

async function check(ctx: CommandContext, argv: string[], deps: LexiconCommandDeps): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      published: { type: 'boolean', default: false },
      did: { type: 'string' },
      lexicons: { type: 'string', default: DEFAULT_LEXICONS },
      pinned: { type: 'string', default: DEFAULT_PINNED },
      json: { type: 'boolean', default: false },
    },
  })
  if (values.did !== undefined && !values.published) throw new UsageError('--did goes with --published')
  const local = await loadLexiconDir(values.lexicons)
  const pinned = await loadLexiconDir(values.pinned)
  const deviations = await loadDeviations(join(values.pinned, 'deviations.json'))
  if (!values.published) {
    const result = checkContract({ local, published: pinned, deviations, flagStale: true })
    return answer(ctx, values.json, result, 'the pinned published copy', {})
  }
  const config = parseConfig(ctx.env)
  const sources: PublishedLexicon[] = []
  for (const doc of local) {
    sources.push(await fetchPublishedLexicon(doc.id, { did: values.did, plcUrl: config.plcUrl, resolveTxt: deps.resolveTxt, fetch: deps.fetch }))
  }
  const result = checkContract({ local, published: sources.map((s) => s.doc), deviations })
  const pinnedById = new Map(pinned.map((d) => [d.id, d]))
  const pinnedUpToDate = sources.filter((s) => pinnedById.has(s.doc.id) && sameDoc(s.doc, pinnedById.get(s.doc.id)!)).map((s) => s.doc.id)
  const extra = { source: sources.map(({ did, pds, uri, cid }) => ({ did, pds, uri, cid })), pinnedUpToDate }
  const notes = sources.map((s) => `published: ${s.uri} (cid ${s.cid}, on ${s.pds})${pinnedUpToDate.includes(s.doc.id) ? '' : '; lexicons-published/ differs from it'}`)
  return answer(ctx, values.json, result, 'the published record', extra, notes)
}

function answer(ctx: CommandContext, json: boolean, result: ContractReport, against: string, extra: Record<string, unknown>, notes: string[] = []): number {
  report(ctx.stdout, json, { ...result, ...extra }, () => [...notes, describeReport(result, against)].join('\n'))
  if (result.ok) return 0
  ctx.stderr.write(`moodsync lexicon check: lexicons/ breaks compatibility with ${against} (see above)\n`)
  return 1
}

async function publish(ctx: CommandContext, argv: string[], deps: LexiconCommandDeps): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      lexicons: { type: 'string', default: DEFAULT_LEXICONS },
      pinned: { type: 'string', default: DEFAULT_PINNED },
      json: { type: 'boolean', default: false },
    },
  })
  const config = parseConfig(ctx.env)
  const local = await loadLexiconDir(values.lexicons)
  const deviations = await loadDeviations(join(values.pinned, 'deviations.json'))
  // First the contract with the pinned copy, as CI checks it: nothing is sent when it fails.
  const pinnedCheck = checkContract({ local, published: await loadLexiconDir(values.pinned), deviations, flagStale: true })
  if (!pinnedCheck.ok) return refuse(ctx, values.json, pinnedCheck, 'the pinned published copy')
  const { identifier, password } = requireLexiconAuthority(config)
  const session = await loginAuthority(config.pdsUrl, identifier, password, deps.fetch)
  // Then the contract with what the account publishes now, if anything: every document is
  // checked before the first is written.
  const current = new Map<string, LexiconDoc>()
  for (const doc of local) {
    const now = await currentPublication(session, doc.id)
    if (now !== undefined) current.set(doc.id, now)
  }
  const liveCheck = checkContract({ local, published: [...current.values()], deviations })
  if (!liveCheck.ok) return refuse(ctx, values.json, liveCheck, `the record ${session.did} publishes now`)
  const published: Array<{ nsid: string; uri: string; cid?: string; unchanged: boolean }> = []
  for (const doc of local) {
    if (liveCheck.identical.includes(doc.id)) {
      published.push({ nsid: doc.id, uri: `at://${session.did}/com.atproto.lexicon.schema/${doc.id}`, unchanged: true })
      continue
    }
    const res = await putSchemaRecord(session, doc)
    published.push({ nsid: doc.id, uri: res.uri, cid: res.cid, unchanged: false })
  }
  const dns = [...new Set(local.map((d) => `_lexicon.${authorityDomain(d.id)}`))].map((host) => ({ host, txt: `did=${session.did}` }))
  report(ctx.stdout, values.json, { did: session.did, published, dns }, () =>
    [
      ...published.map((p) => `${p.unchanged ? 'unchanged' : 'published'}: ${p.uri}${p.cid ? ` (cid ${p.cid})` : ''}`),
      ...dns.map((d) => `resolvers find it through the DNS TXT record ${d.host} "${d.txt}"`),
    ].join('\n'),
  )
  return 0
}

function refuse(ctx: CommandContext, json: boolean, result: ContractReport, against: string): number {
  report(ctx.stdout, json, { published: [], refused: true, ...result }, () => describeReport(result, against))
  ctx.stderr.write(`moodsync lexicon publish: refused: lexicons/ breaks compatibility with ${against}; nothing was published\n`)
  return 1
}
