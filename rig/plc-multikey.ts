import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A loopback pass-through in front of dev-env's PLC for Jetstream v2 alone. `@did-plc/server`
 * serves the legacy verification-method form (`EcdsaSecp256k1VerificationKey2019`); Jetstream
 * v2 refuses every commit signed under it ("unknown multicodec prefix"), while the relay, Tap
 * and goat accept it, as they do the current `Multikey` form that plc.directory serves. This
 * rewrites `GET /did:plc:…` into that current form, from the PLC's own `/data`; every other
 * request passes through untouched. Not a stand-in: the PLC behind it is the real one.
 */
export class PlcMultikeyProxy {
  readonly url: string
  readonly #server: Server

  private constructor(url: string, server: Server) {
    this.url = url
    this.#server = server
  }

  static async start(plcUrl: string): Promise<PlcMultikeyProxy> {
    const upstream = plcUrl.replace(/\/$/, '')
    const server = createServer((req, res) => {
      void (async () => {
        const path = req.url ?? '/'
        const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await readAll(req)
        const passed = await fetch(`${upstream}${path}`, { method: req.method, headers: { 'content-type': req.headers['content-type'] ?? 'application/json' }, body })
        let text = await passed.text()
        const did = /^\/(did:plc:[a-z2-7]+)$/.exec(path)?.[1]
        if (did && passed.ok) text = JSON.stringify(await modernise(upstream, did, JSON.parse(text)))
        res.writeHead(passed.status, { 'content-type': passed.headers.get('content-type') ?? 'application/json' })
        res.end(text)
      })().catch((err: Error) => {
        res.writeHead(502, { 'content-type': 'text/plain' })
        res.end(`plc proxy: ${err.message}`)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return new PlcMultikeyProxy(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, server)
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

async function modernise(upstream: string, did: string, doc: Record<string, unknown>): Promise<Record<string, unknown>> {
  const data = (await (await fetch(`${upstream}/${did}/data`)).json()) as { verificationMethods?: Record<string, string> }
  const methods = Object.entries(data.verificationMethods ?? {}).map(([name, key]) => ({
    id: `${did}#${name}`,
    type: 'Multikey',
    controller: did,
    publicKeyMultibase: key.replace(/^did:key:/, ''),
  }))
  return { ...doc, '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'], verificationMethod: methods }
}

function readAll(req: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}
