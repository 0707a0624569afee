import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { differential } from '../harness/differential.js'
import { startRespProxy } from '../harness/proxy.js'
import { type RespValue, sendCommand, startRedis, type TestRedis } from '../harness/redis-server.js'
import { command, rawConnect } from '../harness/resp-client.js'
import { FAMILIES, type Family, STATEFUL } from './corpus.js'

/**
 * Every family of the corpus on side A (a redis-server) and side B, one
 * connection each in lockstep, in RESP2 and again after HELLO 3: each reply
 * must be the same bytes. The corpus is held to its own invariants here as
 * well (keys under the family's prefix, nothing left behind, no typo hiding
 * behind an identical error on both sides), checked on side A.
 */

type SideB = { readonly port: number; stop(): Promise<void> }

/**
 * Side B. Today a second redis-server identical to A, which proves the corpus
 * deterministic; the drop-in suite points it at the proxy in front of one.
 */
/** The proxy's sidecar in front of a redis-server identical to side A's. */
async function sideB(): Promise<SideB> {
  const redis = await startRedis()
  const proxy = await startRespProxy(redis.url, { CACHE_GLOBAL_EXPIRY: '600000' })
  return {
    port: proxy.port,
    async stop() {
      await proxy.close()
      await redis.stop()
    },
  }
}

/** Replies a family may only give on purpose, in the `errors` family: elsewhere they mean a typo. */
const TYPO = /^-(ERR unknown command|ERR wrong number of arguments|ERR syntax error)/

let a: TestRedis
let b: SideB

beforeAll(async () => {
  ;[a, b] = await Promise.all([startRedis(), sideB()])
})

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
})

const shown = (reply: string): string =>
  reply.length > 200 ? `${reply.slice(0, 200)}... (${reply.length} bytes)` : reply

async function compare(family: Family, resp3: boolean): Promise<void> {
  const steps = resp3 ? [['HELLO', '3'], ...family.steps] : family.steps
  const pairs = await differential(a.port, b.port, steps)
  let left: { a: string[]; b: string[] }
  if (resp3) {
    // HELLO's map names the server (version, client id): the same type is all that can match.
    const hello = pairs.shift()
    expect(hello?.direct[0]).toBe('%')
    expect(hello?.proxied[0]).toBe('%')
  }
  try {
    expect(pairs).toHaveLength(family.steps.length)
    const differing = pairs
      .filter((pair) => pair.direct !== pair.proxied)
      .map((pair) => ({
        step: shown(pair.step),
        direct: shown(pair.direct),
        proxied: shown(pair.proxied),
      }))
    expect(differing).toEqual([])
    if (family.family !== 'errors') {
      const typos = pairs.filter((pair) => TYPO.test(pair.direct)).map((pair) => pair.step)
      expect(typos).toEqual([])
    }
  } finally {
    left = await leftovers()
  }
  // The family cleaned up after itself, so it runs again with the same replies.
  expect(left).toEqual({ a: [], b: [] })
}

/**
 * Keys a family left behind on each side; if any, both sides are flushed so
 * that one family's leak fails that family alone.
 */
async function leftovers(): Promise<{ a: string[]; b: string[] }> {
  const names = (reply: RespValue): string[] =>
    Array.isArray(reply) ? reply.map((key) => String(key)).sort() : [String(reply)]
  const left = {
    a: names(await a.command('KEYS', '*')),
    b: names(await sendCommand(b.port, ['KEYS', '*'])),
  }
  if (left.a.length > 0 || left.b.length > 0) {
    await Promise.all([a.command('FLUSHALL'), sendCommand(b.port, ['FLUSHALL'])])
  }
  return left
}

describe.each([
  { protocol: 'RESP2', resp3: false },
  { protocol: 'RESP3', resp3: true },
])('in $protocol', ({ resp3 }) => {
  test.each(FAMILIES.map((family) => ({ name: family.family, family })))(
    '$name replies byte for byte as Redis does',
    async ({ family }) => {
      await compare(family, resp3)
    },
  )
})

test('every key the corpus names, stateful sequences included, is under its family prefix', async () => {
  const connection = await rawConnect(a.port)
  try {
    const outside: string[] = []
    const all = [
      ...FAMILIES,
      ...STATEFUL.map(({ family, steps }) => ({
        family,
        steps: steps.flatMap((step) => (step.command === undefined ? [] : [step.command])),
      })),
    ]
    for (const { family, steps } of all) {
      for (const step of steps) {
        connection.send(command('COMMAND', 'GETKEYS', ...step))
        const [keys] = await connection.replies(1)
        // Commands without keys (and malformed ones, in `errors`) answer an error.
        if (!Array.isArray(keys)) continue
        for (const key of keys) {
          const name = Buffer.isBuffer(key) ? key.toString() : String(key)
          if (!name.startsWith(`${family}:`))
            outside.push(`${family}: ${step.join(' ')} -> ${name}`)
        }
      }
    }
    expect(outside).toEqual([])
  } finally {
    connection.close()
  }
})

test('every command of the stateful sequences is one Redis knows', async () => {
  const names = [
    ...new Set(
      STATEFUL.flatMap(({ steps }) => steps.flatMap((step) => step.command?.slice(0, 1) ?? [])),
    ),
  ]
  const info = await a.command('COMMAND', 'INFO', ...names)
  const unknown = names.filter((_, i) => !Array.isArray(info) || info[i] === null)
  expect(unknown).toEqual([])
})
