import { describe, expect, it } from 'vitest'
import { createLogger } from '../log.js'
import { createUsers } from './acl.js'
import { AuthFailureLimiter } from './failures.js'
import { type AuthClient, AuthGate, type AuthRefusal } from './gate.js'

function gate(options: { password?: string; acl?: string } = {}) {
  const lines: string[] = []
  const refusals: [AuthClient, AuthRefusal][] = []
  const clock = { t: 0, now: () => clock.t }
  const users = createUsers({
    ...(options.password !== undefined && { defaultPassword: options.password }),
    ...(options.acl !== undefined && { aclFile: { text: options.acl, source: 'users.acl' } }),
  })
  const g = new AuthGate({
    users,
    log: createLogger('info', (line) => lines.push(line)),
    onRefused: (client, refusal) => refusals.push([client, refusal]),
    limiter: new AuthFailureLimiter({ maxFailures: 3, windowMs: 60_000, blockMs: 1000, clock }),
  })
  return { g, lines, refusals, clock }
}

const resp: AuthClient = { interface: 'resp', address: '127.0.0.1:5555' }

describe('AuthGate', () => {
  it('starts clients as the default user when it needs no password, as Redis does', () => {
    const { g } = gate()
    expect(g.requiresAuth()).toBe(false)
    expect(g.initialUser()?.name).toBe('default')
  })

  it('starts clients unauthenticated once the default user has a password', () => {
    const { g } = gate({ password: 's3cret' })
    expect(g.requiresAuth()).toBe(true)
    expect(g.initialUser()).toBeNull()
    expect(g.authenticate('default', 's3cret', resp)).toMatchObject({ name: 'default' })
  })

  it('refuses a wrong password, an unknown user and a disabled one alike, logging no password', () => {
    const { g, lines, refusals } = gate({
      acl: 'user default on nopass ~* +@all\nuser alice on >pw ~* +@all\nuser bob off >pw ~* +@all\n',
    })
    expect(g.authenticate('alice', 'pw', resp)).toMatchObject({ name: 'alice' })
    for (const [name, password] of [
      ['alice', 'nope'],
      ['carol', 'pw'],
      ['bob', 'pw'],
    ] as const) {
      expect(g.authenticate(name, password, resp)).toEqual({ refused: 'wrongpass' })
    }
    expect(refusals.map(([client, r]) => `${client.interface} ${r.refused}`)).toEqual([
      'resp wrongpass',
      'resp wrongpass',
      'resp wrongpass',
    ])
    expect(lines.join('\n')).toContain('"user":"carol"')
    expect(lines.join('\n')).toContain('"client":"127.0.0.1:5555"')
    expect(lines.join('\n')).not.toContain('nope')
  })

  it('refuses an address that failed too often without checking, until its block ends', () => {
    const { g, clock } = gate({ password: 'right' })
    for (let i = 0; i < 3; i++) g.authenticate('default', 'wrong', resp)
    expect(g.authenticate('default', 'right', resp)).toMatchObject({ refused: 'limited' })
    // Another address is not held back by this one.
    expect(g.authenticate('default', 'right', { ...resp, address: '10.0.0.9:1' })).toMatchObject({
      name: 'default',
    })
    clock.t += 1001
    expect(g.authenticate('default', 'right', resp)).toMatchObject({ name: 'default' })
  })
})
