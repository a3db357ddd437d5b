import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * The metric types are prom-client's (the Prometheus client Node services use): its
 * exposition format, label handling and process and runtime collectors, not ours to keep.
 */
export { Counter, Gauge, Histogram, Registry }

/** A counter on `registry`. */
export function counter<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  return new Counter({ name, help, labelNames, registers: [registry] })
}

/** A gauge on `registry`; `collect` (when given) sets it at each scrape, so it is never stale. */
export function gauge<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = [], collect?: () => number | undefined): Gauge<L> {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    ...(collect
      ? {
          collect(this: Gauge<L>) {
            const value = collect()
            if (value !== undefined) this.set(value)
          },
        }
      : {}),
  })
}

export function histogram(registry: Registry, name: string, help: string, buckets: number[]): Histogram {
  return new Histogram({ name, help, buckets, registers: [registry] })
}

/** The process's CPU, memory, event-loop lag, handles and GC, the usual `process_*` and `nodejs_*` series. */
export function addProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry })
}

/** One series' current value (0 when never set), for tests and summaries. */
export async function valueOf(metric: Counter<string> | Gauge<string> | Histogram, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get()
  const want = Object.entries(labels)
  const match = values.find((v) => {
    const have = v.labels as Record<string, unknown>
    // A histogram's count series; a counter's or gauge's only one.
    if ('metricName' in v && !String(v.metricName).endsWith('_count')) return false
    return want.every(([k, value]) => have[k] === value) && Object.keys(have).filter((k) => k !== 'le').length === want.length
  })
  return match?.value ?? 0
}
