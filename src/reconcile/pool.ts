/**
 * Runs `work` over `items` with at most `limit` in flight, reading `items` lazily (a discovery
 * listing can be long). Stops taking new items once `signal` aborts; items already started
 * finish. Errors from `work` are the caller's to catch: one item's failure must not stop the rest.
 */
export async function forEachConcurrent<T>(items: AsyncIterable<T> | Iterable<T>, limit: number, signal: AbortSignal | undefined, work: (item: T) => Promise<void>): Promise<void> {
  const iterator = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : toAsync(items)
  let done = false
  // Several runners share one iterator: each pull is chained so two never call next() at once.
  let pulling: Promise<unknown> = Promise.resolve()
  const pull = (): Promise<IteratorResult<T>> => {
    const next = pulling.then(() => (done || signal?.aborted ? { done: true as const, value: undefined } : iterator.next()))
    pulling = next.catch(() => {})
    return next
  }
  const runner = async () => {
    for (;;) {
      const next = await pull()
      // Aborted while the item was being fetched (a listing page): it is not started either.
      if (next.done || signal?.aborted) {
        done = true
        return
      }
      await work(next.value)
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, limit) }, runner))
  } finally {
    await iterator.return?.()
  }
}

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items
}
