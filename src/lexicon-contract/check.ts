import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Lexicons } from '@atproto/lexicon'
import { MoodsyncError } from '../errors.ts'
import { CORPUS, type CorpusEntry, type Verdict } from './corpus.ts'
import { compareLexicons, type BreakKind, type LexiconDoc, type RuleBreak } from './evolution.ts'

/** A lexicon folder or the deviations file could not be read as what it must be. */
export class LexiconContractError extends MoodsyncError {
  override name = 'LexiconContractError'
}

/**
 * A difference kept on purpose, with its reason (lexicons-published/deviations.json). A record
 * deviation names a corpus entry and both verdicts; a rule deviation names a rule break by path
 * and kind. Each excuses exactly that difference, and one that excuses nothing fails the check
 * against the pinned copy (it is no longer needed: remove it).
 */
export type Deviation =
  | { nsid: string; corpus: string; local: Verdict; published: Verdict; reason: string }
  | { nsid: string; rule: { path: string; kind: BreakKind }; reason: string }

export interface CorpusDifference {
  nsid: string
  entry: string
  note: string
  local: Verdict
  published: Verdict
  /** Why the side that refuses refuses. */
  error: string
}

export interface ContractReport {
  ok: boolean
  /** NSIDs compared (published and local both have them). */
  compared: string[]
  /** Local documents with no published counterpart (new: nothing to break). */
  unpublished: string[]
  /** Local and published documents are the same JSON (descriptions included). */
  identical: string[]
  breaks: RuleBreak[]
  differences: CorpusDifference[]
  /** Differences the deviations excuse, each with its reason. */
  excused: Array<(RuleBreak | CorpusDifference) & { reason: string }>
  /** Deviations that excuse nothing (a failure only when `flagStale`). */
  staleDeviations: Deviation[]
  /** Corpus records run through both schemas. */
  corpusRecords: number
}

export interface CheckInput {
  local: LexiconDoc[]
  published: LexiconDoc[]
  deviations?: Deviation[]
  corpus?: Record<string, CorpusEntry[]>
  /** Deviations that excuse nothing fail the check (true against the pinned copy they were written for). */
  flagStale?: boolean
}

/** Compares local lexicons with published ones: the evolution rules, then the corpus through both. */
export function checkContract(input: CheckInput): ContractReport {
  const corpus = input.corpus ?? CORPUS
  const deviations = input.deviations ?? []
  const localById = new Map(input.local.map((d) => [d.id, d]))
  const compared = input.published.filter((d) => localById.has(d.id)).map((d) => d.id)
  const breaks: RuleBreak[] = []
  for (const pub of input.published) {
    const loc = localById.get(pub.id)
    if (loc === undefined) breaks.push({ nsid: pub.id, path: '', kind: 'removed-def', message: `${pub.id} is published but lexicons/ has no document for it` })
    else breaks.push(...compareLexicons(pub, loc))
  }
  const localLex = lexicons(input.local, 'the local lexicons')
  const publishedLex = lexicons(input.published, 'the published lexicons')
  const differences: CorpusDifference[] = []
  let corpusRecords = 0
  for (const nsid of compared) {
    for (const entry of corpus[nsid] ?? []) {
      corpusRecords++
      const local = verdict(localLex, nsid, entry.record)
      const published = verdict(publishedLex, nsid, entry.record)
      if (local.verdict === published.verdict) continue
      differences.push({ nsid, entry: entry.name, note: entry.note, local: local.verdict, published: published.verdict, error: (local.error ?? published.error)! })
    }
  }
  const used = new Set<Deviation>()
  const excused: ContractReport['excused'] = []
  const excuse = <T extends RuleBreak | CorpusDifference>(found: T[], match: (d: Deviation, f: T) => boolean): T[] =>
    found.filter((f) => {
      const deviation = deviations.find((d) => match(d, f))
      if (deviation === undefined) return true
      used.add(deviation)
      excused.push({ ...f, reason: deviation.reason })
      return false
    })
  const openBreaks = excuse(breaks, (d, b) => 'rule' in d && d.nsid === b.nsid && d.rule.path === b.path && d.rule.kind === b.kind)
  const openDifferences = excuse(differences, (d, f) => 'corpus' in d && d.nsid === f.nsid && d.corpus === f.entry && d.local === f.local && d.published === f.published)
  const staleDeviations = deviations.filter((d) => !used.has(d))
  const publishedById = new Map(input.published.map((d) => [d.id, d]))
  return {
    ok: openBreaks.length === 0 && openDifferences.length === 0 && (!input.flagStale || staleDeviations.length === 0),
    compared,
    unpublished: input.local.filter((d) => !publishedById.has(d.id)).map((d) => d.id),
    identical: compared.filter((id) => sameDoc(localById.get(id)!, publishedById.get(id)!)),
    breaks: openBreaks,
    differences: openDifferences,
    excused,
    staleDeviations,
    corpusRecords,
  }
}

function lexicons(docs: LexiconDoc[], what: string): Lexicons {
  try {
    return new Lexicons(docs as never)
  } catch (err) {
    throw new LexiconContractError(`${what} are not valid lexicon documents: ${(err as Error).message}`, { cause: err })
  }
}

function verdict(lex: Lexicons, nsid: string, record: unknown): { verdict: Verdict; error?: string } {
  try {
    const res = lex.validate(nsid, record)
    return res.success ? { verdict: 'valid' } : { verdict: 'invalid', error: res.error.message }
  } catch (err) {
    return { verdict: 'invalid', error: (err as Error).message }
  }
}

/** The same document, as JSON (descriptions included, key order ignored). */
export function sameDoc(a: LexiconDoc, b: LexiconDoc): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b))
}

/** A JSON value with object keys sorted, for comparing documents whatever their key order. */
export function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
  }
  return value
}

/** Every lexicon document (`*.json` with `lexicon` and `id`) under a folder, sorted by id. */
export async function loadLexiconDir(dir: string): Promise<LexiconDoc[]> {
  let entries: string[]
  try {
    entries = await readdir(dir, { recursive: true })
  } catch (err) {
    throw new LexiconContractError(`cannot read the lexicon folder ${dir}: ${(err as Error).message}`, { cause: err })
  }
  const docs: LexiconDoc[] = []
  for (const entry of entries.filter((e) => e.endsWith('.json')).sort()) {
    let doc: unknown
    try {
      doc = JSON.parse(await readFile(join(dir, entry), 'utf8'))
    } catch (err) {
      throw new LexiconContractError(`${join(dir, entry)} is not JSON: ${(err as Error).message}`, { cause: err })
    }
    // Other JSON beside the documents (deviations.json) is not a lexicon.
    if (!isLexiconDoc(doc)) continue
    docs.push(doc)
  }
  return docs.sort((a, b) => a.id.localeCompare(b.id))
}

export function isLexiconDoc(value: unknown): value is LexiconDoc {
  const v = value as Partial<LexiconDoc> | null
  return typeof v === 'object' && v !== null && v.lexicon === 1 && typeof v.id === 'string' && typeof v.defs === 'object' && v.defs !== null
}

/** The deviations file: `{ "deviations": [...] }`; a missing file means none. */
export async function loadDeviations(file: string): Promise<Deviation[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw new LexiconContractError(`cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
  const parsed = JSON.parse(text) as { deviations?: unknown }
  if (!Array.isArray(parsed.deviations)) throw new LexiconContractError(`${file}: "deviations" must be a list`)
  for (const d of parsed.deviations as Array<Record<string, unknown>>) {
    const shaped = typeof d.nsid === 'string' && typeof d.reason === 'string' && d.reason.trim() !== '' &&
      (('corpus' in d && typeof d.corpus === 'string' && isVerdict(d.local) && isVerdict(d.published)) ||
        ('rule' in d && typeof (d.rule as { path?: unknown })?.path === 'string' && typeof (d.rule as { kind?: unknown })?.kind === 'string'))
    if (!shaped) throw new LexiconContractError(`${file}: each deviation needs nsid, a reason, and either corpus with local and published verdicts or rule {path, kind}: ${JSON.stringify(d)}`)
  }
  return parsed.deviations as Deviation[]
}

function isVerdict(v: unknown): v is Verdict {
  return v === 'valid' || v === 'invalid'
}

/** One line per finding, for people. */
export function describeReport(report: ContractReport, against: string): string {
  const lines: string[] = []
  for (const b of report.breaks) lines.push(`BREAK ${b.nsid} ${b.kind}: ${b.message}`)
  for (const d of report.differences) lines.push(`RECORD ${d.nsid} "${d.entry}" (${d.note}): lexicons/ says ${d.local}, ${against} says ${d.published}: ${d.error}`)
  for (const d of report.staleDeviations) lines.push(`${report.ok ? 'unused' : 'STALE'} deviation ${JSON.stringify(d)}: it excuses nothing; remove it from deviations.json`)
  for (const e of report.excused) lines.push(`intended: ${'entry' in e ? `record "${e.entry}"` : `${e.kind} ${e.path}`} (${e.reason})`)
  for (const id of report.unpublished) lines.push(`new: ${id} is not published yet`)
  lines.push(
    report.ok
      ? `lexicons/ is compatible both ways with ${against} (${report.compared.join(', ')}; ${report.corpusRecords} corpus records through both${report.excused.length ? `, ${report.excused.length} intended deviation(s)` : ''})`
      : `lexicons/ is NOT compatible with ${against}: ${report.breaks.length} rule break(s), ${report.differences.length} record difference(s)${report.staleDeviations.length ? `, ${report.staleDeviations.length} stale deviation(s)` : ''}`,
  )
  return lines.join('\n')
}
