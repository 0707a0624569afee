import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CommandTable, keyPositions, keyPositionsBySpecs } from '../shared/redis/command-table.js'
import type { Reply } from '../shared/redis/reply-decoder.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis
let table: CommandTable

beforeAll(async () => {
  redis = await startRedis()
  table = CommandTable.fromReply((await redis.command('COMMAND')) as Reply)
})
afterAll(async () => redis?.stop())

/** Commands whose keys sit in every way key specs can place them. */
const CORPUS: string[][] = [
  ['GET', 'k'],
  ['SET', 'k', 'v', 'EX', '10', 'GET'],
  ['MSET', 'a', '1', 'b', '2', 'c', '3'],
  ['MGET', 'a', 'b', 'c'],
  ['DEL', 'a', 'b'],
  ['RENAME', 'a', 'b'],
  ['LMOVE', 'src', 'dst', 'LEFT', 'RIGHT'],
  ['BLMOVE', 'src', 'dst', 'LEFT', 'RIGHT', '0'],
  ['BLPOP', 'l1', 'l2', '0'],
  ['LMPOP', '2', 'l1', 'l2', 'LEFT', 'COUNT', '2'],
  ['ZUNIONSTORE', 'dest', '2', 'z1', 'z2', 'WEIGHTS', '1', '2'],
  ['ZINTER', '2', 'z1', 'z2'],
  ['SINTERCARD', '2', 's1', 's2', 'LIMIT', '1'],
  ['EVAL', 'return 1', '2', 'k1', 'k2', 'arg'],
  ['EVAL', 'return 1', '0'],
  ['FCALL', 'f', '1', 'k1', 'arg'],
  ['XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0'],
  ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's1', '>'],
  ['GEORADIUS', 'g', '0', '0', '10', 'km', 'STORE', 'out'],
  ['OBJECT', 'ENCODING', 'k'],
  ['MEMORY', 'USAGE', 'k'],
  ['XINFO', 'STREAM', 's'],
  ['BITOP', 'AND', 'dest', 'a', 'b'],
  ['COPY', 'a', 'b', 'REPLACE'],
  ['SORT', 'k', 'BY', 'w_*', 'STORE', 'out'],
  ['MIGRATE', '127.0.0.1', '1', '', '0', '10', 'KEYS', 'a', 'b'],
  ['PFMERGE', 'dest', 'h1', 'h2'],
  ['WATCH', 'a', 'b'],
  ['PING'],
]

describe('the command table read from the backend (COMMAND)', () => {
  it('knows every command the backend knows, with arity, flags and categories', async () => {
    const count = (await redis.command('COMMAND', 'COUNT')) as number
    expect(table.size).toBe(count)
    const get = table.lookup([Buffer.from('get')])
    expect(get).toMatchObject({ name: 'get', arity: 2, categories: ['read', 'string', 'fast'] })
    expect(get?.flags.has('readonly')).toBe(true)
    expect(table.lookup([Buffer.from('SET')])?.flags.has('write')).toBe(true)
    expect(table.lookup([Buffer.from('nosuch')])).toBeUndefined()
  })

  it('gives the flags tested per command as fields that agree with the flags, for every command and key spec', async () => {
    const names = (await redis.command('COMMAND', 'LIST')) as Buffer[]
    let checked = 0
    let blocking = 0
    for (const name of names) {
      // Subcommands (`config|get`) are checked under their command.
      if (name.includes('|')) continue
      const command = table.lookup([name])
      expect(command, name.toString()).toBeDefined()
      for (const spec of [command, ...(command?.subcommands.values() ?? [])]) {
        if (spec === undefined) continue
        expect(spec.isWrite, spec.name).toBe(spec.flags.has('write'))
        expect(spec.isReadonly, spec.name).toBe(spec.flags.has('readonly'))
        expect(spec.isBlocking, spec.name).toBe(spec.flags.has('blocking'))
        if (spec.isBlocking) blocking++
        for (const keySpec of spec.keySpecs) {
          expect(keySpec.notKey, spec.name).toBe(keySpec.flags.has('not_key'))
          expect(keySpec.ro, spec.name).toBe(keySpec.flags.has('ro'))
          expect(keySpec.incomplete, spec.name).toBe(keySpec.flags.has('incomplete'))
        }
        checked++
      }
    }
    // COMMAND LIST names subcommands too: each was checked once.
    expect(checked).toBe(names.length)
    expect(blocking).toBeGreaterThan(0)
    const set = table.lookup([Buffer.from('set')])
    expect(set).toMatchObject({ isWrite: true, isReadonly: false, isBlocking: false })
    expect(set?.fixedKeys?.keys.positions).toEqual([1])
    // MSET's keys depend on its argument count: walked per call.
    expect(table.lookup([Buffer.from('mset')])?.fixedKeys).toBeNull()
    expect(table.lookup([Buffer.from('blpop')])?.isBlocking).toBe(true)
  })

  it('finds subcommands by their second argument', () => {
    const sub = table.lookup([Buffer.from('CONFIG'), Buffer.from('get'), Buffer.from('x')])
    expect(sub).toMatchObject({ name: 'config|get', arity: -3 })
    expect(table.lookup([Buffer.from('config')])?.name).toBe('config')
  })

  it.each(CORPUS.map((args) => [args.join(' '), args] as const))(
    'names the keys of %s as Redis does (COMMAND GETKEYS)',
    async (_, args) => {
      const bytes = args.map((arg) => Buffer.from(arg))
      const spec = table.lookup(bytes)
      expect(spec, args[0]).toBeDefined()
      const found = keyPositions(spec as NonNullable<typeof spec>, bytes)
      const reply = await redis.command('COMMAND', 'GETKEYS', ...args)
      const redisKeys =
        reply instanceof Error ? [] : (reply as Buffer[]).map((key) => key.toString())
      const ours = found.positions.map((at) => args[at])
      if (found.exact) {
        expect(ours, args.join(' ')).toEqual(redisKeys)
      } else {
        // A superset, for a caller that must not miss a key.
        for (const key of redisKeys) expect(ours, args.join(' ')).toContain(key)
      }
    },
  )

  it('answers, for every command and 1 to 12 arguments, what walking its key specs answers', async () => {
    const names = ((await redis.command('COMMAND', 'LIST')) as Buffer[]).map(String)
    let fixedAnswers = 0
    for (const name of names) {
      for (let argc = 1; argc <= 12; argc++) {
        // Small numbers, so key counts (EVAL's numkeys) are read as counts.
        const args = [name, ...Array.from({ length: argc - 1 }, () => '1')].map((a) =>
          Buffer.from(a),
        )
        const spec = table.lookup(args)
        if (spec === undefined) continue
        const fast = keyPositions(spec, args)
        expect(fast, `${name} with ${argc} arguments`).toEqual(keyPositionsBySpecs(spec, args))
        if (spec.keySpecs.length > 0 && fast === keyPositions(spec, args)) fixedAnswers++
      }
    }
    // The fixed answers are shared, made once per command (SET, GET, INCR...).
    expect(fixedAnswers).toBeGreaterThan(100)
  })

  it('is exact wherever the key specs say enough, and conservative only where they do not', () => {
    const exact = (args: string[]) => {
      const bytes = args.map((arg) => Buffer.from(arg))
      const spec = table.lookup(bytes)
      return spec === undefined ? undefined : keyPositions(spec, bytes).exact
    }
    expect(exact(['MSET', 'a', '1'])).toBe(true)
    expect(exact(['EVAL', 's', '1', 'k'])).toBe(true)
    expect(exact(['XREAD', 'STREAMS', 's', '0'])).toBe(true)
    // STORE's position is 'unknown' in SORT's specs, MIGRATE's KEYS spec 'incomplete'.
    expect(exact(['SORT', 'k', 'STORE', 'out'])).toBe(false)
    expect(exact(['MIGRATE', 'h', '1', '', '0', '10', 'KEYS', 'a'])).toBe(false)
  })
})
