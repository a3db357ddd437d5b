/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format. Enough for /metrics without another dependency.
 */
type Labels = Record<string, string>

abstract class Metric {
  readonly name: string
  readonly help: string
  abstract readonly type: string
  constructor(name: string, help: string) {
    this.name = name
    this.help = help
  }
  abstract samples(): string[]
}

const key = (labels: Labels) => JSON.stringify(Object.entries(labels).sort())
const render = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`)
  return parts.length ? `{${parts.join(',')}}` : ''
}

export class Counter extends Metric {
  readonly type = 'counter'
  readonly #values = new Map<string, { labels: Labels; value: number }>()
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels)
    const entry = this.#values.get(k) ?? { labels, value: 0 }
    entry.value += by
    this.#values.set(k, entry)
  }
  get(labels: Labels = {}): number {
    return this.#values.get(key(labels))?.value ?? 0
  }
  samples(): string[] {
    return [...this.#values.values()].map(({ labels, value }) => `${this.name}${render(labels)} ${value}`)
  }
}

export class Gauge extends Metric {
  readonly type = 'gauge'
  readonly #values = new Map<string, { labels: Labels; value: number }>()
  readonly #collect?: () => number
  constructor(name: string, help: string, collect?: () => number) {
    super(name, help)
    this.#collect = collect
  }
  set(value: number, labels: Labels = {}): void {
    this.#values.set(key(labels), { labels, value })
  }
  samples(): string[] {
    if (this.#collect) return [`${this.name} ${this.#collect()}`]
    return [...this.#values.values()].map(({ labels, value }) => `${this.name}${render(labels)} ${value}`)
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram'
  readonly #buckets: number[]
  readonly #counts: number[]
  #sum = 0
  #count = 0
  constructor(name: string, help: string, buckets: number[]) {
    super(name, help)
    this.#buckets = [...buckets].sort((a, b) => a - b)
    this.#counts = this.#buckets.map(() => 0)
  }
  observe(value: number): void {
    this.#sum += value
    this.#count++
    for (let i = 0; i < this.#buckets.length; i++) if (value <= this.#buckets[i]!) this.#counts[i]!++
  }
  get count(): number {
    return this.#count
  }
  samples(): string[] {
    return [
      ...this.#buckets.map((le, i) => `${this.name}_bucket{le="${le}"} ${this.#counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.#count}`,
      `${this.name}_sum ${this.#sum}`,
      `${this.name}_count ${this.#count}`,
    ]
  }
}

export class Registry {
  readonly #metrics: Metric[] = []
  add<M extends Metric>(metric: M): M {
    this.#metrics.push(metric)
    return metric
  }
  render(): string {
    return `${this.#metrics.flatMap((m) => [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.samples()]).join('\n')}\n`
  }
}
