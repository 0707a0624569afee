/**
 * The few ways a read can fail. Each interface maps these to its wire form in
 * one place (functions/app.ts for HTTP, the sidecar's dispatcher for RESP).
 * A missing key is never an error: it is `null`.
 */

/** The backing Redis answered with an error, or the connection broke mid-command. */
export class BackendError extends Error {
  override readonly name: string = 'BackendError'
}

/**
 * The backing Redis answered the command with an error reply (WRONGTYPE, for
 * example): the connection is fine, this one key cannot be read as a string.
 */
export class BackendReplyError extends BackendError {
  override readonly name = 'BackendReplyError'
}

/** The backing Redis did not answer within the command timeout. */
export class BackendTimeoutError extends BackendError {
  override readonly name = 'BackendTimeoutError'
}

/** No connection to the backing Redis: requests fail fast instead of queueing. */
export class BackendUnavailableError extends BackendError {
  override readonly name = 'BackendUnavailableError'
}

/** Too many backend fetches are already running and waiting. */
export class OverloadedError extends Error {
  override readonly name = 'OverloadedError'
}

/** A Redis Cluster node described its slots in a form the proxy cannot read (CLUSTER SLOTS). */
export class TopologyError extends Error {
  override readonly name = 'TopologyError'
}
