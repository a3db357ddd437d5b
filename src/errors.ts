/**
 * Every error moodsync raises derives from MoodsyncError, so callers can tell moodsync's own
 * failures from anything else, and decide by class (never by name or message) what a failure
 * is. Errors that wrap another keep it as `cause`.
 */
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

/** moodsync holds no PDS password (or session) for the user it must write as. */
export class NoCredentialsError extends MoodsyncError {
  override name = 'NoCredentialsError'
}

/** The account is deactivated, taken down or suspended: nothing can be written to it now. */
export class InactiveAccountError extends MoodsyncError {
  override name = 'InactiveAccountError'
}

/**
 * A sealed credential exists but opens with neither MOODSYNC_SECRET nor MOODSYNC_SECRET_PREVIOUS:
 * this process has the wrong key (or the value was altered). Never names the key or the value.
 */
export class WrongSecretError extends MoodsyncError {
  override name = 'WrongSecretError'
}

/** The PDS refused to log in as the user (a wrong password, a taken-down account): not retried. */
export class LoginRefusedError extends MoodsyncError {
  override name = 'LoginRefusedError'
}
