/**
 * Small helpers shared by the benchmark scripts: order statistics, timing, and plain-text
 * tables. The machines these run on are small and noisy, so every script measures its own
 * baseline in the same run, repeats rounds and reports medians and ratios.
 */

/** The value below which `p` (0..1) of `values` fall, nearest-rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil(p * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >>> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  let sum = 0
  for (const v of values) sum += v
  return sum / values.length
}

export function max(values: readonly number[]): number {
  let m = Number.NEGATIVE_INFINITY
  for (const v of values) if (v > m) m = v
  return values.length === 0 ? Number.NaN : m
}

export function min(values: readonly number[]): number {
  let m = Number.POSITIVE_INFINITY
  for (const v of values) if (v < m) m = v
  return values.length === 0 ? Number.NaN : m
}

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return performance.now()
}

/** Runs `work` and returns its result with the wall time it took (ms). */
export async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now()
  const value = await work()
  return { value, ms: performance.now() - started }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Fixed-point with `digits` decimals; '-' for NaN. */
export function fmt(value: number, digits = 1): string {
  if (Number.isNaN(value)) return '-'
  return value.toFixed(digits)
}

/** A thousands-separated integer. */
export function int(value: number): string {
  return Number.isNaN(value) ? '-' : Math.round(value).toLocaleString('en-US')
}

/** A markdown table (pipes, header separator), columns padded for the terminal too. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`
  const sep = `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(Math.max(1, w - 1))}:`)).join(' | ')} |`
  return [line(header), sep, ...rows.map(line)].join('\n')
}

/** One line to stderr: progress that stays out of the table on stdout. */
export function progress(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${message}\n`)
}

/** Node, OS and CPU facts for the report header. */
export async function machineNote(): Promise<string> {
  const os = await import('node:os')
  const cpus = os.cpus()
  return `node ${process.version}, ${os.platform()} ${os.arch()}, ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB`
}
