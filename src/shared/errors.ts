/** A configuration value is missing or malformed; `variable` names the env var or config path. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly variable: string,
    expected: string,
    options?: { cause?: unknown },
  ) {
    super(`${variable}: expected ${expected}`, options);
  }
}

/** A service the process depends on is not reachable or not usable. */
export class ServiceError extends Error {
  override name = 'ServiceError';
}

/** Input rejected at the edge; `reason` is a stable machine-readable code. */
export class RejectError extends Error {
  override name = 'RejectError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}
