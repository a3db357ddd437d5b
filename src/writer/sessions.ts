import { silentLogger, type Logger } from '../logger.ts'
import { NoCredentialsError } from '../errors.ts'
import type { SessionStore } from '../store/sessions.ts'
import type { CredentialStore } from './credentials.ts'
import { PdsError, type XrpcClient } from '../atproto/xrpc.ts'
import type { SecretBox } from './secret-box.ts'

interface Session {
  did: string
  accessJwt: string
  refreshJwt: string
}


/** Seconds left on a JWT, read from its payload (the PDS checks the signature, we only plan). */
function secondsLeft(jwt: string): number {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: number }
    return typeof payload.exp === 'number' ? payload.exp - Date.now() / 1000 : Infinity
  } catch {
    return Infinity
  }
}

/**
 * One session per account, reused across posts: kept in memory, and (with MOODSYNC_SECRET)
 * sealed in `moodsync_sessions` so a cold serverless start reuses it too. An expiring access
 * token is refreshed with the refresh token; only when that fails is the password used again.
 */
export class SessionManager {
  /** createSession calls made by this process (each one costs the account a login). */
  logins = 0
  readonly #stored: SessionStore
  readonly #client: XrpcClient
  readonly #credentials: CredentialStore
  readonly #box?: SecretBox
  readonly #log: Logger
  readonly #cache = new Map<string, Session>()
  readonly #pending = new Map<string, Promise<Session>>()

  constructor(opts: { sessions: SessionStore; client: XrpcClient; credentials: CredentialStore; box?: SecretBox; log?: Logger }) {
    this.#stored = opts.sessions
    this.#client = opts.client
    this.#credentials = opts.credentials
    this.#box = opts.box
    this.#log = opts.log ?? silentLogger
  }

  /**
   * Makes sure `user` can be written as, before anything is stored: a live session in memory, a
   * sealed one that opens, or else a login with the stored password (one the write needs anyway).
   * Throws NoCredentialsError or WrongSecretError when no retry can help, and the PDS's own
   * PdsError for a login it refused or could not answer; the caller judges which is which.
   */
  async prepare(user: string): Promise<void> {
    await this.#session(user)
  }

  /** Calls `method` as `user`, refreshing or re-creating the session once if it has expired. */
  async call<T>(user: string, method: string, opts: { body?: unknown; query?: Record<string, string> } = {}): Promise<T> {
    let session = await this.#session(user)
    try {
      return await this.#client.call<T>(method, { ...opts, token: session.accessJwt })
    } catch (err) {
      if (!(err instanceof PdsError) || !(err.expiredToken || (err.status === 401 && err.error !== 'AccountDeactivated'))) throw err
      session = await this.#renew(user, session)
      return this.#client.call<T>(method, { ...opts, token: session.accessJwt })
    }
  }

  async #session(user: string): Promise<Session> {
    const cached = this.#cache.get(user)
    if (cached && secondsLeft(cached.accessJwt) > 60) return cached
    const inflight = this.#pending.get(user)
    if (inflight) return inflight
    const work = (async () => {
      const session = cached ?? (await this.#load(user))
      if (session && secondsLeft(session.accessJwt) > 60) return session
      return session ? this.#renew(user, session) : this.#login(user)
    })()
    this.#pending.set(user, work)
    try {
      const session = await work
      this.#cache.set(user, session)
      return session
    } finally {
      this.#pending.delete(user)
    }
  }

  async #renew(user: string, session: Session): Promise<Session> {
    if (secondsLeft(session.refreshJwt) > 10) {
      try {
        const res = await this.#client.call<Session>('com.atproto.server.refreshSession', { token: session.refreshJwt, body: {} })
        const next = { did: res.did, accessJwt: res.accessJwt, refreshJwt: res.refreshJwt }
        await this.#store(user, next)
        return next
      } catch (err) {
        if (err instanceof PdsError && err.transient) throw err
        this.#log.info({ user }, 'refresh token refused; logging in again')
      }
    }
    return this.#login(user)
  }

  async #login(user: string): Promise<Session> {
    const credential = await this.#credentials.get(user)
    if (!credential) throw new NoCredentialsError(`no ATProto password is stored for ${user}`)
    this.logins++
    const res = await this.#client.call<Session>('com.atproto.server.createSession', { body: { identifier: credential.did, password: credential.password } })
    const session = { did: res.did, accessJwt: res.accessJwt, refreshJwt: res.refreshJwt }
    this.#log.info({ user, did: res.did }, 'created a PDS session')
    await this.#store(user, session)
    return session
  }

  async #load(user: string): Promise<Session | undefined> {
    if (!this.#box) return undefined
    const tokens = await this.#stored.get(user)
    if (tokens === undefined) return undefined
    try {
      return JSON.parse(this.#box.open(tokens)) as Session
    } catch {
      return undefined
    }
  }

  async #store(user: string, session: Session): Promise<void> {
    this.#cache.set(user, session)
    if (!this.#box) return
    await this.#stored.put(user, this.#box.seal(JSON.stringify(session)))
  }
}
