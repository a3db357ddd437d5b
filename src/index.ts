// The library the platform's functions import. Nothing here reads process.env: callers pass
// configuration (parseConfig turns an environment into it, once, at their edge).
export { parseConfig, requireSecret, DEFAULTS, type Config, type Env } from './config.ts'
export { ConfigError, MoodsyncError, StoreError } from './errors.ts'
export { createLogger, silentLogger, type Logger } from './logger.ts'
export { MOOD_NSID, parseMood, toRecord, type Mood, type MoodParse } from './mood.ts'
export { Store, type StoreOptions } from './store/store.ts'
export { MoodStore, type MoodOp, type UpsertOp, type DeleteOp, type ApplyResult } from './store/moods.ts'
export { CursorStore } from './store/cursors.ts'
export { ensureIndexes } from './store/indexes.ts'
export { fillDids, migrateStorage, type FillDidsResult } from './store/migrations.ts'
export { COLLECTIONS, type MoodDoc, type AtprotoState, type UserDoc } from './store/collections.ts'
