import net from 'node:net'

/**
 * A loopback TCP proxy that can cut the line: `down()` drops every connection and refuses new
 * ones, `up()` accepts again on the same port. From a client's side that is the server
 * stopping and restarting, whatever the server is (FerretDB or a real MongoDB).
 */
export class TcpProxy {
  port = 0
  readonly #target: { host: string; port: number }
  #server = new net.Server()
  readonly #sockets = new Set<net.Socket>()

  private constructor(target: { host: string; port: number }) {
    this.#target = target
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target)
    proxy.#server = await proxy.#listen(0)
    proxy.port = (proxy.#server.address() as net.AddressInfo).port
    return proxy
  }

  #listen(port: number): Promise<net.Server> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.#target.port, this.#target.host)
      for (const s of [client, upstream]) {
        this.#sockets.add(s)
        s.on('close', () => this.#sockets.delete(s))
        s.on('error', () => {
          client.destroy()
          upstream.destroy()
        })
      }
      client.pipe(upstream).pipe(client)
    })
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve(server))
    })
  }

  /**
   * Every open connection stops moving bytes, both ways, while its TCP stays open: a frozen
   * upstream or a half-open line, which only a timeout can notice. New connections still work.
   */
  freeze(): void {
    for (const s of this.#sockets) {
      // A piped socket resumes on its destination's 'drain': unpipe, then pause.
      s.unpipe()
      s.pause()
    }
  }

  async down(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      for (const s of this.#sockets) s.destroy()
    })
  }

  async up(): Promise<void> {
    this.#server = await this.#listen(this.port)
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
