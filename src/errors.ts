/** Base class so callers can tell moodsync's own failures from anything else. */
export class MoodsyncError extends Error {
  override name = 'MoodsyncError'
}

/** A setting is missing or malformed. The message is one line that names the variable. */
export class ConfigError extends MoodsyncError {
  override name = 'ConfigError'
  readonly variable: string
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`)
    this.variable = variable
  }
}

/** MongoDB could not be reached or refused an operation. */
export class StoreError extends MoodsyncError {
  override name = 'StoreError'
}

/** Generated lexicon code differs from what the lexicons produce. */
export class StaleCodegenError extends MoodsyncError {
  override name = 'StaleCodegenError'
  readonly files: string[]
  constructor(files: string[]) {
    super(`generated lexicon code is stale (${files.join(', ')}): run "moodsync codegen" and commit the result`)
    this.files = files
  }
}
