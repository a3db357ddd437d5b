import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { goTool } from './tools.ts'

const run = promisify(execFile)

/**
 * goat (indigo's ATProto CLI) logged in as one account: an ATProto client that is not ours
 * and not `@atproto/api`, for the moods "from any other client" the indexer must follow.
 * Its session file lives in a temp home of its own.
 */
export class GoatClient {
  readonly did: string
  readonly #binary: string
  readonly #home: string
  readonly #env: Record<string, string>

  private constructor(did: string, binary: string, home: string, env: Record<string, string>) {
    this.did = did
    this.#binary = binary
    this.#home = home
    this.#env = env
  }

  static async login(opts: { pdsUrl: string; plcUrl: string; did: string; password: string }): Promise<GoatClient> {
    const binary = await goTool('goat')
    const home = await mkdtemp(join(tmpdir(), 'moodsync-goat-'))
    const env = { ATP_PLC_HOST: opts.plcUrl, XDG_STATE_HOME: join(home, 'state'), XDG_CONFIG_HOME: join(home, 'config'), HOME: home, GOAT_LOG_LEVEL: 'warn' }
    const client = new GoatClient(opts.did, binary, home, env)
    // It logs in with the DID (a dev-env handle does not resolve); the password is passed in
    // its environment, not on a command line other processes can read.
    await client.#goat(['account', 'login', '--pds-host', opts.pdsUrl, '-u', opts.did], { ATP_AUTH_PASSWORD: opts.password })
    return client
  }

  /** `goat record create`: the record's URI and CID. */
  async create(record: Record<string, unknown>, rkey?: string): Promise<{ uri: string; cid: string; rkey: string }> {
    return this.#write(['record', 'create', '--no-validate', ...(rkey ? ['--rkey', rkey] : [])], record)
  }

  /** `goat record update` (a put that swaps the current version). */
  async update(rkey: string, record: Record<string, unknown>): Promise<{ uri: string; cid: string; rkey: string }> {
    return this.#write(['record', 'update', '--no-validate', '--rkey', rkey], record)
  }

  async delete(collection: string, rkey: string): Promise<void> {
    await this.#goat(['record', 'delete', '--collection', collection, '--rkey', rkey])
  }

  async close(): Promise<void> {
    await rm(this.#home, { recursive: true, force: true })
  }

  async #write(args: string[], record: Record<string, unknown>) {
    const file = join(this.#home, `record-${Date.now()}-${Math.random().toString(36).slice(2)}.json`)
    await writeFile(file, JSON.stringify(record))
    const out = await this.#goat([...args, file])
    const [uri, cid] = out.trim().split('\t')
    if (!uri?.startsWith('at://') || !cid) throw new Error(`goat printed no URI and CID: ${out}`)
    return { uri, cid, rkey: uri.split('/').pop()! }
  }

  async #goat(args: string[], env: Record<string, string> = {}): Promise<string> {
    try {
      const { stdout } = await run(this.#binary, args, { env: { ...process.env, ...this.#env, ...env }, timeout: 30_000 })
      return stdout
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`goat ${args.slice(0, 2).join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err })
    }
  }
}
