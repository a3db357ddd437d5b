import { IdResolver, MemoryCache } from '@atproto/identity'

/**
 * DID documents cached (signing keys rarely change; a failed verification refreshes once).
 * The default fetch refuses loopback and private addresses (SSRF protection); a PLC on
 * loopback is a development network, so it gets the plain fetch.
 */
export function createIdResolver(plcUrl: string): IdResolver {
  const host = new URL(plcUrl).hostname
  const loopback = host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.')
  return new IdResolver({ plcUrl, didCache: new MemoryCache(), ...(loopback ? { fetch: globalThis.fetch } : {}) })
}
