/**
 * Small helpers shared by the benchmarks: alternate contenders over rounds, take medians,
 * print ratio tables. The machine is small and noisy, so a benchmark measures its own
 * baseline in the same run and reports ratios beside the absolute numbers.
 */
import { cpus, totalmem } from 'node:os'

export interface Sample {
  /** Events (or operations) done. */
  events: number
  /** Wall time they took. */
  ms: number
}

export interface Contender {
  name: string
  /** Runs one measurement; called once per round. */
  run: () => Promise<Sample>
  /** The untimed warm-up run (default: `run`). */
  warm?: () => Promise<unknown>
}

export interface RoundsOptions {
  rounds: number
  /** Called after every measurement (progress on stderr). */
  onSample?: (name: string, round: number, sample: Sample) => void
  /** Runs once, untimed, before the rounds (JIT, connections, caches). */
  warmup?: boolean
}

/**
 * Runs every contender once per round. The order rotates each round, so no contender always
 * runs first (cold) or right after the heaviest one.
 */
export async function rounds(contenders: readonly Contender[], opts: RoundsOptions): Promise<Map<string, Sample[]>> {
  const results = new Map<string, Sample[]>(contenders.map((c) => [c.name, []]))
  if (opts.warmup) for (const c of contenders) await (c.warm ?? c.run)()
  for (let r = 0; r < opts.rounds; r++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + r) % contenders.length]!
      const sample = await c.run()
      results.get(c.name)!.push(sample)
      opts.onSample?.(c.name, r, sample)
    }
  }
  return results
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Events per second of one sample. */
export function rate(sample: Sample): number {
  return (sample.events / sample.ms) * 1000
}

export interface Summary {
  name: string
  /** Median events/s over the rounds. */
  median: number
  min: number
  max: number
  rounds: number
}

export function summarise(results: Map<string, Sample[]>): Map<string, Summary> {
  const out = new Map<string, Summary>()
  for (const [name, samples] of results) {
    const rates = samples.map(rate)
    out.set(name, { name, median: median(rates), min: Math.min(...rates), max: Math.max(...rates), rounds: rates.length })
  }
  return out
}

/**
 * Ratio of medians of per-round ratios: each round's A/B is taken from measurements made
 * seconds apart, which cancels slow drifts of the machine better than a ratio of medians.
 */
export function pairedRatio(results: Map<string, Sample[]>, a: string, b: string): number {
  const as = results.get(a)
  const bs = results.get(b)
  if (!as || !bs) throw new Error(`no samples for ${as ? b : a}`)
  const n = Math.min(as.length, bs.length)
  const ratios: number[] = []
  for (let i = 0; i < n; i++) ratios.push(rate(as[i]!) / rate(bs[i]!))
  return median(ratios)
}

/** A Markdown table with aligned columns (readable in a terminal too). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[\d.,]+x?$|^[\d,]+–[\d,]+$|^—$/.test(r[i] ?? '')))
  const cell = (text: string, i: number) => (numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!))
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`
  const rule = `| ${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`
  return [line(headers), rule, ...rows.map(line)].join('\n')
}

/** 123456.7 -> '123,457' */
export function formatRate(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a'
}

/** 0.934 -> '0.93x' */
export function formatRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a'
}

export function verdict(ratio: number, target: number): string {
  const margin = ((ratio / target - 1) * 100).toFixed(0)
  return ratio >= target ? `met (${formatRatio(ratio)} >= ${formatRatio(target)}, +${margin}%)` : `MISSED (${formatRatio(ratio)} < ${formatRatio(target)}, ${margin}%)`
}

/** One line about where the numbers came from. */
export function machineNote(): string {
  const cpu = cpus()
  return `${cpu.length} CPU (${cpu[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`
}

/** `--name=value` or `--name value` from argv, else the environment variable, else the default. */
export function option(name: string, env: string, fallback: number): number {
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === `--${name}` && argv[i + 1] !== undefined) return Number(argv[i + 1])
    if (arg.startsWith(`--${name}=`)) return Number(arg.slice(name.length + 3))
  }
  const fromEnv = process.env[env]
  return fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : fallback
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`)
}

// ---------------------------------------------------------------------------------------------
// Deterministic fixtures: the same records every run

const S32 = '234567abcdefghijklmnopqrstuvwxyz'
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function s32(value: number, width: number): string {
  let out = ''
  for (let i = 0; i < width; i++) {
    out = S32[value % 32]! + out
    value = Math.floor(value / 32)
  }
  return out
}

/** An ATProto TID: 11 characters of microseconds, 2 of clock id. */
export function tid(us: number, clock: number): string {
  return s32(us, 11) + s32(clock, 2)
}

function randomChars(random: () => number, alphabet: string, length: number): string {
  let out = ''
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(random() * alphabet.length)]
  return out
}

const MOODS = [
  'happy',
  'tired but ok',
  'listening to the rain 🌧️',
  'coding all night',
  'feeling ✨ sparkly ✨',
  'meh',
  'excited for the weekend!!',
  'drawing pixels on aesthetic.computer',
  'calm',
  'a bit lost, a bit found 🌊',
  'coffee ☕ then more coffee',
  'grateful 🙏',
]

export interface FakeCommit {
  did: string
  /** Jetstream cursor, increasing. */
  timeUs: number
  rev: string
  rkey: string
  cid: string
  mood: string
  /** ISO datetime with timezone. */
  when: string
}

/**
 * `count` record creations, one record each, spread over min(10,000, count/4) DIDs, in
 * increasing time order; rkeys are unique TIDs.
 */
export function fakeCommits(count: number, seed = 0x600d): FakeCommit[] {
  const random = mulberry32(seed)
  const dids = Array.from({ length: Math.max(1, Math.min(10_000, count >> 2)) }, () => `did:plc:${randomChars(random, B32, 24)}`)
  const out = new Array<FakeCommit>(count)
  let us = Date.now() * 1000 - count * 50
  for (let i = 0; i < count; i++) {
    us += 1 + Math.floor(random() * 80)
    out[i] = {
      did: dids[Math.floor(random() * dids.length)]!,
      timeUs: us,
      rev: tid(us - 1_000, i % 1024),
      rkey: tid(us - 2_000, i % 1024),
      cid: `bafyrei${randomChars(random, B32, 52)}`,
      mood: MOODS[i % MOODS.length]!,
      when: new Date(Math.floor(us / 1000) - 3_000).toISOString(),
    }
  }
  return out
}
