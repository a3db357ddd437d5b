import { pino, type DestinationStream, type Logger } from 'pino'
import type { LogLevel } from './config.ts'

export type { Logger }

/**
 * Field names that hold credentials anywhere moodsync logs. Redaction is by configuration so
 * that a careless `log.info({ user })` cannot leak a password or a token.
 */
const SECRET_KEYS = [
  'password',
  'appPassword',
  'accessJwt',
  'refreshJwt',
  'token',
  'secret',
  'authorization',
  'cookie',
  'mongodbUri',
]

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
]

/** Replaces a URL's user-info part so a connection string can be logged. */
export function redactUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i, '$1***@')
}

export interface LoggerOptions {
  level?: LogLevel
  name?: string
  /** Where lines go; stdout by default. Tests pass a capturing stream. */
  destination?: DestinationStream
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'moodsync',
      level: opts.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: undefined,
    },
    opts.destination,
  )
}

/** A logger that drops everything: the default for library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' })
