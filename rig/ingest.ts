import { parseConfig, type Env } from '../src/config.ts'
import { App } from '../src/app/app.ts'
import type { IngestService, IngestServiceOptions } from '../src/app/service.ts'
import type { Source } from '../src/ingest/events.ts'
import { createLogger, type Logger } from '../src/logger.ts'
import type { TestDb } from './mongo.ts'

/** An IngestService on the test database, health listener on a free loopback port. */
export async function startIngest(db: TestDb, env: Env, opts: { source?: Source; log?: Logger; onApplied?: IngestServiceOptions['onApplied'] } = {}): Promise<IngestService> {
  // The outbox and backfill workers are off unless a test asks: tests drive them themselves.
  const config = parseConfig({ MONGODB_URI: db.uri, MONGODB_DB: db.name, MOODSYNC_HTTP_PORT: '0', LOG_LEVEL: 'warn', MOODSYNC_OUTBOX: 'off', MOODSYNC_AUTO_BACKFILL: 'off', ...env })
  const service = new App(config, { log: opts.log ?? createLogger({ level: 'silent' }) }).ingestService({ source: opts.source, onApplied: opts.onApplied })
  await service.start()
  return service
}
