/**
 * The bench library, part 1: run options, rounds, order statistics, tables and the result
 * every bench returns. The machines are small and noisy, so every bench measures its baseline
 * in the same run, rotates the order of its contenders each round and reports medians and
 * ratios. Every bench's `run({ size: 'tiny' })` is run by the test suite (test/*\/bench-tiny.test.ts).
 */
import { realpathSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export type Size = 'tiny' | 'full'

/** What every bench's run() takes: a size, a MongoDB to use (else MONGODB_URI or the rig's server), and knob overrides. */
export interface RunOptions {
  size: Size
  mongoUri?: string
}

/** A bench's knobs at its size, overridden by what the caller passed. */
export function knobs<K extends Record<string, number | string | boolean>>(opts: RunOptions & Partial<K>, sizes: Record<Size, K>): K {
  const out = { ...sizes[opts.size] }
  for (const key of Object.keys(out) as (keyof K)[]) if (opts[key] !== undefined) out[key] = opts[key] as K[keyof K]
  return out
}

export interface Table {
  headers: string[]
  rows: string[][]
}

export interface Result {
  title: string
  tables: Table[]
  notes: string[]
  /** Rates, times and ratios: each must be finite and > 0, or the run failed. */
  metrics: Record<string, number>
  /** What the run did against what it set out to do: each pair must be equal. */
  counts: Record<string, [got: number, want: number]>
}

/** What is wrong with a result (empty when nothing): the script exits 1 on any, the tiny test fails. */
export function problems(result: Result, labels?: readonly string[]): string[] {
  const out: string[] = []
  if (Object.keys(result.metrics).length === 0) out.push('no metrics')
  if (Object.keys(result.counts).length === 0) out.push('no counts')
  const rows = result.tables[0]?.rows.map((row) => row[0]) ?? []
  if (labels && JSON.stringify(rows) !== JSON.stringify(labels)) out.push(`rows ${JSON.stringify(rows)}, want ${JSON.stringify(labels)}`)
  for (const [name, value] of Object.entries(result.metrics)) if (!(Number.isFinite(value) && value > 0)) out.push(`${name}: ${value} (want a finite number > 0)`)
  for (const [name, [got, want]] of Object.entries(result.counts)) if (got !== want) out.push(`${name}: ${got}, want ${want}`)
  return out
}

export function render(result: Result): string {
  return [result.title, `machine: ${machineNote()}`, '', ...result.tables.flatMap((t) => [table(t.headers, t.rows), '']), ...result.notes].join('\n')
}

/**
 * Runs `run` when the module `meta` belongs to is the script node was started with: flags
 * (`--tiny`, `--name value`, `--name=value`, or `BENCH_NAME=value`) become its options, the
 * result goes to stdout, progress to stderr; exits 1 when the result has problems.
 */
export async function script(meta: ImportMeta, run: (opts: RunOptions) => Promise<Result>): Promise<void> {
  if (!isMain(meta)) return
  const result = await run(flags(process.argv.slice(2)) as unknown as RunOptions)
  process.stdout.write(`${render(result)}\n`)
  const wrong = problems(result)
  if (wrong.length > 0) process.stderr.write(`CHECKS FAILED:\n${wrong.map((p) => `- ${p}`).join('\n')}\n`)
  // Clients (@skyware/jetstream, the PDS's) may leave timers behind; the result is out.
  process.exit(wrong.length > 0 ? 1 : 0)
}

export function isMain(meta: ImportMeta): boolean {
  try {
    return meta.filename !== undefined && meta.filename === realpathSync(process.argv[1] ?? '')
  } catch {
    return false
  }
}

export function flags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const camel = (name: string) => name.toLowerCase().replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase())
  const value = (text: string) => (text !== '' && Number.isFinite(Number(text)) ? Number(text) : text)
  const opts: Record<string, unknown> = { size: 'full' }
  for (const [key, text] of Object.entries(env)) if (key.startsWith('BENCH_') && key !== 'BENCH_QUIET' && text) opts[camel(key.slice(6))] = value(text)
  for (let i = 0; i < argv.length; i++) {
    const match = /^--([a-z][\w-]*)(?:=(.*))?$/.exec(argv[i]!)
    if (!match) throw new Error(`unexpected argument ${JSON.stringify(argv[i])}: options are --name value`)
    let text = match[2]
    if (text === undefined && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) text = argv[++i]
    opts[camel(match[1]!)] = text === undefined ? true : value(text)
  }
  if (opts.tiny === true) opts.size = 'tiny'
  if (opts.size !== 'tiny' && opts.size !== 'full') throw new Error(`--size must be tiny or full (got ${String(opts.size)})`)
  return opts
}

// ---------------------------------------------------------------------------------------------
// Rounds and statistics

export interface Sample {
  /** Events (or operations) done. */
  events: number
  /** Wall time they took. */
  ms: number
}

export interface Contender {
  name: string
  run: () => Promise<Sample>
  /** The untimed warm-up (default: `run`). */
  warm?: () => Promise<unknown>
}

/** Every contender once per round, the order rotating so none always runs first or after the heaviest. */
export async function rounds(contenders: readonly Contender[], opts: { rounds: number; warmup?: boolean }): Promise<Map<string, Sample[]>> {
  const results = new Map<string, Sample[]>(contenders.map((c) => [c.name, []]))
  if (opts.warmup) for (const c of contenders) await (c.warm ?? c.run)()
  for (let r = 0; r < opts.rounds; r++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + r) % contenders.length]!
      const sample = await c.run()
      results.get(c.name)!.push(sample)
      progress(`  round ${r + 1}: ${c.name.padEnd(56)} ${int(rate(sample)).padStart(10)} /s (${sample.events} in ${fmt(sample.ms)} ms)`)
    }
  }
  return results
}

/** Events per second of one sample. */
export function rate(sample: Sample): number {
  return (sample.events / sample.ms) * 1000
}

/** Median, min and max rate of each contender. */
export function summarise(results: Map<string, Sample[]>): Map<string, { median: number; min: number; max: number }> {
  return new Map([...results].map(([name, samples]) => {
    const rates = samples.map(rate)
    return [name, { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) }]
  }))
}

/** Median of the per-round rate ratios a/b: measurements seconds apart, so slow drifts cancel. */
export function pairedRatio(results: Map<string, Sample[]>, a: string, b: string): number {
  const as = results.get(a)
  const bs = results.get(b)
  if (!as || !bs) throw new Error(`no samples for ${as ? b : a}`)
  return median(as.slice(0, bs.length).map((s, i) => rate(s) / rate(bs[i]!)))
}

/** The value below which `p` (0..1) of `values` fall, nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Runs `work`, with the wall time it took (ms). */
export async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now()
  const value = await work()
  return { value, ms: performance.now() - started }
}

/** A full garbage collection (V8's gc, exposed on first use). */
export function fullGc(): void {
  if (!gc) setFlagsFromString('--expose-gc')
  gc ??= runInNewContext('gc') as () => void
  gc()
}
let gc: (() => void) | undefined

// ---------------------------------------------------------------------------------------------
// Formatting

/** Fixed-point with `digits` decimals; 'n/a' when not finite. */
export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

/** 123456.7 -> '123,457' */
export function int(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a'
}

/** 0.934 -> '0.93x' */
export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a'
}

export function verdict(value: number, target: number): string {
  const margin = ((value / target - 1) * 100).toFixed(0)
  return value >= target ? `met (${ratio(value)} >= ${ratio(target)}, +${margin}%)` : `MISSED (${ratio(value)} < ${ratio(target)}, ${margin}%)`
}

/** A Markdown table, columns padded (numbers to the right) so it reads in a terminal too. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[+-]?[\d.,]+(x|%)?$|^[\d,]+–[\d,]+$|^[\d.]+ \/ [\d.]+$|^—$|^n\/a$/.test(r[i] ?? '')))
  const cell = (text: string, i: number) => (numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!))
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`
  const rule = `| ${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(Math.max(1, w - 1))}:` : '-'.repeat(w))).join(' | ')} |`
  return [line(headers), rule, ...rows.map(line)].join('\n')
}

/** Node, CPU and memory: where the numbers came from. */
export function machineNote(): string {
  const cpu = cpus()
  return `${cpu.length} CPU (${cpu[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`
}

/** One line of progress on stderr (silent with BENCH_QUIET=1, as in the tiny tests). */
export function progress(message: string): void {
  if (!process.env.BENCH_QUIET) process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${message}\n`)
}
