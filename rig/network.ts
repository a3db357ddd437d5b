import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { bindToLoopback } from './loopback.ts'
import { clientRef } from './client-ref.ts'

export { clientRef } from './client-ref.ts'

export interface TestAccount {
  did: string
  handle: string
  password: string
  /** Logged in as this account. */
  agent: AtpAgent
}

export interface TestNetworkOptions {
  /** The PDS's real rate limits (off by default in dev-env). */
  rateLimits?: boolean
}

/** A real PDS and PLC, in-process on 127.0.0.1, their data in a temp folder removed on stop. */
export class TestNetwork {
  readonly net: TestNetworkNoAppView
  readonly #dir: string
  #accounts = 0

  private constructor(net: TestNetworkNoAppView, dir: string) {
    this.net = net
    this.#dir = dir
  }

  static async start(opts: TestNetworkOptions = {}): Promise<TestNetwork> {
    bindToLoopback()
    const dir = await mkdtemp(join(tmpdir(), 'moodsync-pds-'))
    // dev-env makes scratch folders (and port locks) in os.tmpdir() even when told where its
    // data goes: point TMPDIR into our folder while it starts, so stop() removes everything.
    const savedTmp = process.env.TMPDIR
    try {
      await mkdir(join(dir, 'data'))
      await mkdir(join(dir, 'tmp'))
      process.env.TMPDIR = join(dir, 'tmp')
      const net = await TestNetworkNoAppView.create({
        pds: {
          dataDirectory: join(dir, 'data'),
          blobstoreDiskLocation: join(dir, 'blobs'),
          rateLimitsEnabled: opts.rateLimits ?? false,
        },
      })
      return new TestNetwork(net, dir)
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      throw err
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = savedTmp
    }
  }

  get pdsUrl(): string {
    return this.net.pds.url
  }

  get plcUrl(): string {
    return this.net.plc.url
  }

  /** The PDS's own firehose endpoint. */
  get firehoseUrl(): string {
    return `${this.pdsUrl.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`
  }

  async createAccount(name = `user${++this.#accounts}`): Promise<TestAccount> {
    const handle = `${name}.test`
    const password = `pw-${name}-${Math.random().toString(36).slice(2)}`
    const agent = new AtpAgent({ service: this.pdsUrl })
    const res = await agent.createAccount({ handle, password, email: `${name}@example.test` })
    return { did: res.data.did, handle, password, agent }
  }

  adminHeaders(): Record<string, string> {
    return this.net.pds.adminAuthHeaders()
  }

  async stop(): Promise<void> {
    try {
      await this.net.close()
    } finally {
      await rm(this.#dir, { recursive: true, force: true })
    }
  }
}

/** A mood created with `@atproto/api` (createRecord), as any other client would: its rkey and CID. */
export async function createMood(account: TestAccount, mood: string, when = new Date().toISOString()): Promise<{ rkey: string; cid: string }> {
  const res = await account.agent.com.atproto.repo.createRecord({ repo: account.did, collection: MOOD_NSID, record: { $type: MOOD_NSID, mood, when, ref: clientRef() } })
  return { rkey: res.data.uri.split('/').pop()!, cid: res.data.cid }
}

/** Every mood record in the account's repo, as listed by its PDS (all pages). */
export async function listMoodRecords(account: TestAccount): Promise<{ rkey: string; cid: string; value: Record<string, unknown> }[]> {
  const all: { rkey: string; cid: string; value: Record<string, unknown> }[] = []
  let cursor: string | undefined
  do {
    const page = await account.agent.com.atproto.repo.listRecords({ repo: account.did, collection: MOOD_NSID, limit: 100, cursor })
    all.push(...page.data.records.map((r) => ({ rkey: r.uri.split('/').pop()!, cid: r.cid, value: r.value as Record<string, unknown> })))
    cursor = page.data.records.length > 0 ? page.data.cursor : undefined
  } while (cursor)
  return all
}
