/** What a long run has done so far. */
export interface ProgressCounts {
  done: number
  /** Known once the list of work is complete (a discovery listing may still be running). */
  total?: number
  failed: number
  /** Moods seen so far, where the work has a count of them. */
  records?: number
}

/**
 * Prints a line now and then while a long run works: items done, records, rate and ETA. On a
 * terminal the line rewrites itself; elsewhere (logs, CI) one line per interval.
 */
export class Progress {
  readonly #out: NodeJS.WritableStream
  readonly #label: string
  readonly #unit: string
  readonly #intervalMs: number
  readonly #started = Date.now()
  readonly #tty: boolean
  #last = 0

  constructor(out: NodeJS.WritableStream, label: string, opts: { intervalMs?: number; unit?: string } = {}) {
    this.#out = out
    this.#label = label
    this.#unit = opts.unit ?? 'repos'
    this.#tty = (out as { isTTY?: boolean }).isTTY === true
    this.#intervalMs = opts.intervalMs ?? (this.#tty ? 250 : 5_000)
  }

  update(counts: ProgressCounts): void {
    const now = Date.now()
    if (now - this.#last < this.#intervalMs) return
    this.#last = now
    this.#out.write(`${this.#tty ? '\r\x1b[2K' : ''}${formatProgress(this.#label, counts, now - this.#started, this.#unit)}${this.#tty ? '' : '\n'}`)
  }

  /** Ends the progress line (the final report follows on its own lines). */
  finish(counts: ProgressCounts): void {
    this.#last = 0
    this.#out.write(`${this.#tty ? '\r\x1b[2K' : ''}${formatProgress(this.#label, counts, Date.now() - this.#started, this.#unit)}\n`)
  }
}

export function formatProgress(label: string, counts: ProgressCounts, elapsedMs: number, unit = 'repos'): string {
  const seconds = elapsedMs / 1000
  const rate = seconds > 0 ? counts.done / seconds : 0
  const total = counts.total === undefined ? '' : `/${counts.total}`
  const remaining = counts.total === undefined ? undefined : counts.total - counts.done
  const eta = remaining === undefined || rate === 0 ? '' : `, ETA ${formatDuration((remaining / rate) * 1000)}`
  const failed = counts.failed > 0 ? ` (${counts.failed} failed)` : ''
  const moods = counts.records === undefined ? '' : `, ${counts.records} moods`
  return `${label}: ${counts.done}${total} ${unit}${failed}${moods}, ${rate.toFixed(1)} ${unit}/s${eta}`
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`
}
