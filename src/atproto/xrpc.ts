import { MoodsyncError } from '../errors.ts'

/** A PDS answer that is not a success, or no answer at all. */
export class PdsError extends MoodsyncError {
  override name = 'PdsError'
  /** HTTP status; 0 when the PDS could not be reached or timed out. */
  readonly status: number
  /** The XRPC error name (`InvalidSwap`, `ExpiredToken`, `RateLimitExceeded`, ...). */
  readonly error?: string
  /** When a 429 says the budget comes back (ms since epoch). */
  readonly retryAt?: number

  constructor(method: string, status: number, error: string | undefined, message: string, opts: { retryAt?: number; cause?: unknown } = {}) {
    super(`${method}: ${status === 0 ? 'PDS unreachable' : `HTTP ${status}`}${error ? ` ${error}` : ''}${message ? `: ${message}` : ''}`, { cause: opts.cause })
    this.status = status
    this.error = error
    this.retryAt = opts.retryAt
  }

  /** Worth retrying later: network, timeout, 5xx, 429. Anything else is the PDS refusing. */
  get transient(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500
  }

  get expiredToken(): boolean {
    return this.status === 400 && this.error === 'ExpiredToken'
  }
}

export interface XrpcClientOptions {
  url: string
  fetch?: typeof globalThis.fetch
  timeoutMs?: number
}

/**
 * XRPC over fetch, just what the writer and the repo reader need. It returns the rate-limit headers with every
 * answer, which the budget uses; credentials are sent in headers and never appear in errors.
 */
export class XrpcClient {
  readonly url: string
  readonly #fetch: typeof globalThis.fetch
  readonly #timeoutMs: number

  constructor(opts: XrpcClientOptions) {
    this.url = opts.url.replace(/\/+$/, '')
    this.#fetch = opts.fetch ?? globalThis.fetch
    this.#timeoutMs = opts.timeoutMs ?? 15_000
  }

  async call<T>(method: string, opts: { token?: string; body?: unknown; query?: Record<string, string> } = {}): Promise<T> {
    const res = await this.#request(method, opts)
    const text = await res.text().catch(() => '')
    return (text ? JSON.parse(text) : {}) as T
  }

  /**
   * A binary answer (a repo CAR), refused before reading when it announces more than
   * `maxBytes`: the caller then reads the repo some other way instead of holding it all.
   */
  async bytes(method: string, opts: { query?: Record<string, string>; maxBytes?: number } = {}): Promise<Uint8Array> {
    const chunks: Uint8Array[] = []
    for await (const chunk of await this.stream(method, opts)) chunks.push(chunk)
    return Buffer.concat(chunks)
  }

  /**
   * A binary answer as its chunks arrive, so the caller works while the rest downloads and
   * never holds a second copy. More than `maxBytes` (announced or counted) is a 413, a body
   * cut off a PdsError with status 0 (transient), as for `bytes`.
   */
  async stream(method: string, opts: { query?: Record<string, string>; maxBytes?: number } = {}): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.#request(method, { query: opts.query, timeoutMs: Math.max(this.#timeoutMs, 120_000) })
    const max = opts.maxBytes
    const announced = Number(res.headers.get('content-length'))
    if (max !== undefined && Number.isFinite(announced) && announced > max) {
      await res.body?.cancel().catch(() => {})
      throw new PdsError(method, 413, 'TooLarge', `answer of ${announced} bytes exceeds the ${max}-byte limit`)
    }
    return (async function* () {
      if (!res.body) return
      let total = 0
      const reader = res.body.getReader()
      try {
        for (;;) {
          let next: Awaited<ReturnType<typeof reader.read>>
          try {
            next = await reader.read()
          } catch (err) {
            throw new PdsError(method, 0, undefined, `answer cut off: ${(err as Error).message}`, { cause: err })
          }
          if (next.done) return
          total += next.value.byteLength
          if (max !== undefined && total > max) throw new PdsError(method, 413, 'TooLarge', `answer of more than ${total} bytes exceeds the ${max}-byte limit`)
          yield next.value
        }
      } finally {
        await reader.cancel().catch(() => {})
      }
    })()
  }

  /** Sends the call; any answer but a success becomes a PdsError. */
  async #request(method: string, opts: { token?: string; body?: unknown; query?: Record<string, string>; timeoutMs?: number }): Promise<Response> {
    const url = new URL(`${this.url}/xrpc/${method}`)
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v)
    const headers: Record<string, string> = {}
    if (opts.token) headers.authorization = `Bearer ${opts.token}`
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    let res: Response
    try {
      res = await this.#fetch(url, {
        method: opts.body === undefined ? 'GET' : 'POST',
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.#timeoutMs),
      })
    } catch (err) {
      throw new PdsError(method, 0, undefined, (err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message, { cause: err })
    }
    if (res.ok) return res
    const text = await res.text().catch(() => '')
    let error: string | undefined
    let message = ''
    try {
      const body = JSON.parse(text) as { error?: string; message?: string }
      error = body.error
      message = body.message ?? ''
    } catch {
      message = text.slice(0, 200)
    }
    throw new PdsError(method, res.status, error, message, { retryAt: res.status === 429 ? retryAt(res.headers) : undefined })
  }
}

/** RateLimit-Reset is epoch seconds; Retry-After is seconds from now. */
function retryAt(headers: Headers): number {
  const reset = Number(headers.get('ratelimit-reset'))
  if (Number.isFinite(reset) && reset > 0) return reset * 1000
  const after = Number(headers.get('retry-after'))
  return Date.now() + (Number.isFinite(after) && after > 0 ? after * 1000 : 60_000)
}
