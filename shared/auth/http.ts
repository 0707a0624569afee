import type { User } from './acl.js'
import type { AuthGate } from './gate.js'

/**
 * HTTP's way in through the gate: who a request is, from its Authorization
 * header. Shared by the app (functions/app.ts, on every runtime) and the
 * METRICS_PORT listener (shared/metrics-server.ts), so one rule decides both.
 *
 * - `Authorization: Bearer <password>` is the default user with that password
 *   (as Redis's `AUTH <password>`).
 * - `Authorization: Basic base64(<user>:<password>)` is any user.
 * - No header, or a scheme neither of these: the user a client is before it
 *   authenticates (the default user when it needs no password), else refused.
 *
 * Credentials that are sent are always checked, even where none are needed:
 * a wrong one is refused, as Redis answers a wrong AUTH with WRONGPASS
 * whatever requirepass says, so a client never believes it is someone it is not.
 */

/** Both schemes the proxy takes, for the 401's `WWW-Authenticate`. */
export const WWW_AUTHENTICATE =
  'Basic realm="redis-proxy", charset="UTF-8", Bearer realm="redis-proxy"'

/** Why a request gets no user: the status, headers and body text of its answer. */
export type HttpRefusal = Readonly<{
  status: 401 | 429
  headers: Readonly<Record<string, string>>
  body: string
}>

const NO_CREDENTIALS: HttpRefusal = Object.freeze({
  status: 401,
  headers: Object.freeze({ 'WWW-Authenticate': WWW_AUTHENTICATE }),
  body: 'Authentication required',
})

const WRONG_CREDENTIALS: HttpRefusal = Object.freeze({
  status: 401,
  headers: Object.freeze({ 'WWW-Authenticate': WWW_AUTHENTICATE }),
  body: 'Invalid username or password',
})

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const UTF8 = new TextDecoder()
const COLON = 0x3a

/**
 * The user an HTTP request is, or the refusal to answer. Without a gate
 * everything is open (the app built without one, as on an unconfigured test).
 * `address` is the client's, for the failure limiter and the log line.
 */
export function authenticateHttp(
  gate: AuthGate | undefined,
  authorization: string | undefined,
  address: string,
): User | HttpRefusal | null {
  if (gate === undefined) return null
  const credentials = authorization === undefined ? undefined : parseAuthorization(authorization)
  if (credentials === undefined) return gate.initialUser() ?? NO_CREDENTIALS
  const result = gate.authenticate(credentials.name, credentials.password, {
    interface: 'http',
    address,
  })
  if ('refused' in result) {
    if (result.refused === 'wrongpass') return WRONG_CREDENTIALS
    const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000))
    return {
      status: 429,
      headers: { 'Retry-After': String(seconds) },
      body: 'Too many failed authentications, retry later',
    }
  }
  return result
}

/** Whether authenticateHttp refused. (null, no gate, is not a refusal.) */
export function isRefusal(result: User | HttpRefusal | null): result is HttpRefusal {
  return result !== null && 'status' in result
}

type Credentials = { name: string; password: string | Uint8Array }

/**
 * The user and password in an Authorization header, undefined for a scheme
 * the proxy does not take. A Basic value that is not base64 or has no colon
 * still goes to the gate (as a user named by what there is, with an empty
 * password), so it is refused, logged and counted like any wrong guess.
 */
export function parseAuthorization(header: string): Credentials | undefined {
  const space = header.indexOf(' ')
  const scheme = (space === -1 ? header : header.slice(0, space)).toLowerCase()
  const value = space === -1 ? '' : header.slice(space + 1).trim()
  if (scheme === 'bearer') return { name: 'default', password: value }
  if (scheme !== 'basic') return undefined
  let decoded: string
  try {
    if (!BASE64.test(value)) throw new TypeError('not base64')
    decoded = atob(value)
  } catch {
    return { name: '', password: '' }
  }
  const bytes = Uint8Array.from(decoded, (char) => char.charCodeAt(0))
  const colon = bytes.indexOf(COLON)
  if (colon === -1) return { name: UTF8.decode(bytes), password: '' }
  // The password stays bytes: it is hashed as sent, whatever its encoding.
  return { name: UTF8.decode(bytes.subarray(0, colon)), password: bytes.subarray(colon + 1) }
}
