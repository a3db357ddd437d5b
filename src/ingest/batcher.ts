/**
 * Regroups a stream of arrays into batches of whatever is already waiting (at most `maxSize`), so a
 * quiet stream applies each event at once and a busy one amortises writes. A background pump
 * reads ahead up to `highWater` items, then stops pulling: the source feels the backpressure
 * (and pauses its socket) instead of memory growing.
 */
export async function* batches<T>(source: AsyncIterable<readonly T[]>, opts: { maxSize: number; highWater: number }): AsyncGenerator<T[]> {
  const buffer: T[] = []
  let done = false
  let failure: { error: unknown } | undefined
  let stop = false
  let wakeConsumer: (() => void) | undefined
  let wakePump: (() => void) | undefined
  const signalConsumer = () => {
    wakeConsumer?.()
    wakeConsumer = undefined
  }
  const signalPump = () => {
    wakePump?.()
    wakePump = undefined
  }

  const pump = (async () => {
    try {
      for await (const items of source) {
        for (const item of items) buffer.push(item)
        signalConsumer()
        while (buffer.length >= opts.highWater && !stop) await new Promise<void>((resolve) => (wakePump = resolve))
        if (stop) break
      }
    } catch (error) {
      failure = { error }
    } finally {
      done = true
      signalConsumer()
    }
  })()

  try {
    for (;;) {
      if (buffer.length > 0) {
        const batch = buffer.splice(0, opts.maxSize)
        signalPump()
        yield batch
        continue
      }
      if (failure) throw failure.error
      if (done) return
      await new Promise<void>((resolve) => (wakeConsumer = resolve))
    }
  } finally {
    stop = true
    signalPump()
    await pump
  }
}
