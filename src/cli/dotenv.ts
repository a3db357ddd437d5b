import { readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'
import type { Env } from '../config.ts'

/** The process environment over a `.env` file's values: a real variable always wins. */
export function loadEnv(processEnv: Env, path = '.env'): Env {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return processEnv
    throw err
  }
  return { ...parseEnv(text), ...processEnv }
}
