import { ConfigError } from './errors.ts'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
export type SourceKind = 'jetstream' | 'firehose' | 'tap'

export interface Config {
  mongodb: { uri: string; db: string }
  /** Where the writer writes. */
  pdsUrl: string
  jetstreamUrl: string
  /** A relay or PDS `com.atproto.sync.subscribeRepos` endpoint. */
  firehoseUrl: string
  plcUrl: string
  /** A Tap instance (its HTTP base; events come over its `/channel` WebSocket, with acks). */
  tap: { url: string; adminPassword: string | undefined; addUsers: boolean }
  source: SourceKind
  /** Key material for credentials stored encrypted; absent means plain-text passwords only. */
  secret: string | undefined
  /**
   * The key being rotated away from (MOODSYNC_SECRET_PREVIOUS): while set, sealed values open
   * with either key and are sealed again with `secret` only. Never logged.
   */
  previousSecret: string | undefined
  logLevel: LogLevel
  http: { host: string; port: number }
  /** Whether `moodsync ingest` also drains the writer's outbox (retries pending writes). */
  outbox: boolean
  /** Whether `moodsync ingest` also reads whole the repos queued by gaps and `#sync`. */
  autoBackfill: boolean
  /** /healthz turns unhealthy past these. */
  health: { maxLagSeconds: number; maxDisconnectedSeconds: number }
  /** A source connection silent this long (no frame, no answer to a ping) is dropped and reopened. */
  idleTimeoutSeconds: number
  /** The jobs lease (retry and backfill workers): another process takes over this long after the holder dies. */
  leaseSeconds: number
  /**
   * The account that publishes `lexicons/` (`moodsync lexicon publish`, on PDS_URL): its handle
   * or DID and its password (LEXICON_AUTHORITY_HANDLE, LEXICON_AUTHORITY_PASSWORD). Never logged.
   */
  lexiconAuthority: { identifier: string | undefined; password: string | undefined }
}

export type Env = Readonly<Record<string, string | undefined>>

export const DEFAULTS = {
  MONGODB_URI: 'mongodb://127.0.0.1:27017',
  MONGODB_DB: 'aesthetic',
  PDS_URL: 'https://at.aesthetic.computer',
  JETSTREAM_URL: 'wss://jetstream2.us-east.bsky.network/subscribe',
  FIREHOSE_URL: 'wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos',
  PLC_URL: 'https://plc.directory',
  TAP_URL: 'http://127.0.0.1:2480',
  MOODSYNC_TAP_ADD_USERS: 'on',
  MOODSYNC_SOURCE: 'jetstream',
  LOG_LEVEL: 'info',
  MOODSYNC_HTTP_HOST: '127.0.0.1',
  MOODSYNC_HTTP_PORT: '9470',
  MOODSYNC_MAX_LAG_SECONDS: '300',
  MOODSYNC_MAX_DISCONNECTED_SECONDS: '60',
  MOODSYNC_IDLE_TIMEOUT_SECONDS: '30',
  MOODSYNC_LEASE_SECONDS: '15',
  MOODSYNC_OUTBOX: 'on',
  MOODSYNC_AUTO_BACKFILL: 'on',
} as const

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const MIN_SECRET_LENGTH = 32

/**
 * Reads every setting once, at the edge. Throws ConfigError naming the first bad variable;
 * messages never echo a value that could hold a credential.
 */
export function parseConfig(env: Env): Config {
  const get = (name: keyof typeof DEFAULTS): string => {
    const value = env[name]?.trim()
    return value === undefined || value === '' ? DEFAULTS[name] : value
  }
  return {
    mongodb: {
      uri: mongoUri('MONGODB_URI', get('MONGODB_URI')),
      db: dbName('MONGODB_DB', get('MONGODB_DB')),
    },
    pdsUrl: url('PDS_URL', get('PDS_URL'), ['http:', 'https:']),
    jetstreamUrl: url('JETSTREAM_URL', get('JETSTREAM_URL'), ['ws:', 'wss:']),
    firehoseUrl: url('FIREHOSE_URL', get('FIREHOSE_URL'), ['ws:', 'wss:']),
    plcUrl: url('PLC_URL', get('PLC_URL'), ['http:', 'https:']),
    tap: {
      url: url('TAP_URL', get('TAP_URL'), ['http:', 'https:']),
      // Tap's Basic-auth password: never logged, never echoed.
      adminPassword: env.TAP_ADMIN_PASSWORD === undefined || env.TAP_ADMIN_PASSWORD === '' ? undefined : env.TAP_ADMIN_PASSWORD,
      addUsers: oneOf('MOODSYNC_TAP_ADD_USERS', get('MOODSYNC_TAP_ADD_USERS').toLowerCase(), ['on', 'off'] as const) === 'on',
    },
    source: oneOf('MOODSYNC_SOURCE', get('MOODSYNC_SOURCE'), ['jetstream', 'firehose', 'tap'] as const),
    secret: secret('MOODSYNC_SECRET', env.MOODSYNC_SECRET),
    previousSecret: previousSecret(env),
    logLevel: oneOf('LOG_LEVEL', get('LOG_LEVEL').toLowerCase(), LOG_LEVELS),
    http: {
      host: host('MOODSYNC_HTTP_HOST', get('MOODSYNC_HTTP_HOST')),
      port: port('MOODSYNC_HTTP_PORT', get('MOODSYNC_HTTP_PORT')),
    },
    outbox: oneOf('MOODSYNC_OUTBOX', get('MOODSYNC_OUTBOX').toLowerCase(), ['on', 'off'] as const) === 'on',
    autoBackfill: oneOf('MOODSYNC_AUTO_BACKFILL', get('MOODSYNC_AUTO_BACKFILL').toLowerCase(), ['on', 'off'] as const) === 'on',
    health: {
      maxLagSeconds: seconds('MOODSYNC_MAX_LAG_SECONDS', get('MOODSYNC_MAX_LAG_SECONDS')),
      maxDisconnectedSeconds: seconds('MOODSYNC_MAX_DISCONNECTED_SECONDS', get('MOODSYNC_MAX_DISCONNECTED_SECONDS')),
    },
    idleTimeoutSeconds: seconds('MOODSYNC_IDLE_TIMEOUT_SECONDS', get('MOODSYNC_IDLE_TIMEOUT_SECONDS')),
    leaseSeconds: seconds('MOODSYNC_LEASE_SECONDS', get('MOODSYNC_LEASE_SECONDS')),
    lexiconAuthority: {
      identifier: optional(env.LEXICON_AUTHORITY_HANDLE?.trim()),
      // Never echoed: it is the authority account's password.
      password: optional(env.LEXICON_AUTHORITY_PASSWORD),
    },
  }
}

function optional(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

function mongoUri(name: string, value: string): string {
  // Never quote the value: a connection string usually carries a password.
  if (!/^mongodb(\+srv)?:\/\/[^/?#\s]+/.test(value)) {
    throw new ConfigError(name, 'must be a connection string starting with mongodb:// or mongodb+srv://')
  }
  return value
}

function dbName(name: string, value: string): string {
  if (!/^[^/\\. "$*<>:|?]{1,63}$/.test(value)) {
    throw new ConfigError(name, `"${value}" is not a valid MongoDB database name`)
  }
  return value
}

function url(name: string, value: string, protocols: readonly string[]): string {
  let parsed: URL
  try {
    parsed = new URL(value)
  } catch {
    throw new ConfigError(name, `"${value}" is not a URL`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.map((p) => p.slice(0, -1)).join(' or ')} (got ${parsed.protocol.slice(0, -1)})`)
  }
  if (parsed.username || parsed.password) {
    throw new ConfigError(name, 'must not carry credentials')
  }
  return value.replace(/\/+$/, '')
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(name, `"${value}" is not one of ${allowed.join(', ')}`)
  }
  return value as T
}

function secret(name: string, value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined
  if (value.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(name, `must be at least ${MIN_SECRET_LENGTH} characters (got ${value.length})`)
  }
  return value
}

/** Only meaningful beside a current key: a rotation goes from the previous key to MOODSYNC_SECRET. */
function previousSecret(env: Env): string | undefined {
  const previous = secret('MOODSYNC_SECRET_PREVIOUS', env.MOODSYNC_SECRET_PREVIOUS)
  if (previous !== undefined && (env.MOODSYNC_SECRET === undefined || env.MOODSYNC_SECRET === '')) {
    throw new ConfigError('MOODSYNC_SECRET_PREVIOUS', 'is set but MOODSYNC_SECRET is not: set the new key in MOODSYNC_SECRET and the old one here')
  }
  return previous
}

function host(name: string, value: string): string {
  if (!/^[A-Za-z0-9.:\-[\]]+$/.test(value)) {
    throw new ConfigError(name, `"${value}" is not a host name or IP address`)
  }
  return value
}

function seconds(name: string, value: string): number {
  const n = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value) || n <= 0) {
    throw new ConfigError(name, `"${value}" is not a positive number of seconds`)
  }
  return n
}

function port(name: string, value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n > 65535) {
    throw new ConfigError(name, `"${value}" is not a port number (0-65535)`)
  }
  return n
}

/** For `moodsync lexicon publish`: the authority account's identifier and password must be set. */
export function requireLexiconAuthority(config: Config): { identifier: string; password: string } {
  const { identifier, password } = config.lexiconAuthority
  if (identifier === undefined) throw new ConfigError('LEXICON_AUTHORITY_HANDLE', 'is required to publish lexicons (the handle or DID of the account that publishes them)')
  if (password === undefined) throw new ConfigError('LEXICON_AUTHORITY_PASSWORD', 'is required to publish lexicons (the password of LEXICON_AUTHORITY_HANDLE)')
  return { identifier, password }
}

/** For the commands that store or read encrypted credentials: the secret must be set. */
export function requireSecret(config: Config, purpose: string): string {
  if (config.secret === undefined) {
    throw new ConfigError('MOODSYNC_SECRET', `is required to ${purpose} (at least ${MIN_SECRET_LENGTH} characters)`)
  }
  return config.secret
}
