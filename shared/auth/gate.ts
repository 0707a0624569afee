import type { Logger } from '../log.js'
import type { User, Users } from './acl.js'
import { AuthFailureLimiter } from './failures.js'

/** Who is asking: the interface and the client's address (for the limiter and the log). */
export type AuthClient = { readonly interface: 'http' | 'resp'; readonly address: string }

/** Why an authentication was refused. */
export type AuthRefusal =
  /** Unknown user, user off, or wrong password: told apart to nobody, as Redis does. */
  | { readonly refused: 'wrongpass' }
  /** Too many failures from this address lately: not even checked. */
  | { readonly refused: 'limited'; readonly retryAfterMs: number }

export type AuthGateOptions = {
  users: Users
  log: Logger
  /** Counts each refusal (the auth failures metric). */
  onRefused?: (client: AuthClient, refusal: AuthRefusal) => void
  /** @default a limiter with its documented defaults */
  limiter?: AuthFailureLimiter
}

/**
 * The one place a password is checked, for every interface: the users, the
 * failure limiter, the log line and the metric together, so a rule about
 * authentication holds on RESP (AUTH, HELLO AUTH) and HTTP alike. Passwords
 * are never logged: a refusal logs the user name and the client's address.
 */
export class AuthGate {
  readonly #users: Users
  readonly #log: Logger
  readonly #limiter: AuthFailureLimiter
  readonly #onRefused: AuthGateOptions['onRefused']

  constructor(options: AuthGateOptions) {
    this.#users = options.users
    this.#log = options.log
    this.#limiter = options.limiter ?? new AuthFailureLimiter()
    this.#onRefused = options.onRefused
  }

  /** Whether a client must authenticate before anything else (see Users.requiresAuth). */
  requiresAuth(): boolean {
    return this.#users.requiresAuth()
  }

  /**
   * The user a new client is before it authenticates: the default user when
   * it needs no password (Redis's open default), else null.
   */
  initialUser(): User | null {
    return this.#users.requiresAuth() ? null : this.#users.defaultUser()
  }

  /**
   * The default user, whatever its state: `AUTH <password>` is for it, and
   * Redis refuses that form outright when this user is nopass.
   */
  defaultUser(): User {
    return this.#users.defaultUser()
  }

  /** The user for `name` and `password`, or why not. */
  authenticate(
    name: string,
    password: string | Uint8Array,
    client: AuthClient,
  ): User | AuthRefusal {
    const wait = this.#limiter.retryAfter(client.address)
    if (wait > 0) {
      const refusal: AuthRefusal = { refused: 'limited', retryAfterMs: wait }
      this.#refuse(name, client, refusal)
      return refusal
    }
    const user = this.#users.authenticate(name, password)
    if (user === null) {
      this.#limiter.recordFailure(client.address)
      const refusal: AuthRefusal = { refused: 'wrongpass' }
      this.#refuse(name, client, refusal)
      return refusal
    }
    this.#limiter.recordSuccess(client.address)
    return user
  }

  #refuse(name: string, client: AuthClient, refusal: AuthRefusal): void {
    this.#onRefused?.(client, refusal)
    this.#log.warn('authentication refused', {
      interface: client.interface,
      client: client.address,
      user: name,
      reason: refusal.refused,
    })
  }
}
