import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run } from '../lib/processes.js'
import type { RespLoadResult } from './redis-benchmark.js'

/**
 * bench/load/resp-keys.c, compiled with gcc into a temporary directory the
 * first time it is needed in a process. The source is read from the
 * checkout: beside this file when run from source (tests), and from
 * bench/load/ when run from dist-bench, which holds only compiled TypeScript.
 */
const SOURCE = [
  fileURLToPath(new URL('./resp-keys.c', import.meta.url)),
  fileURLToPath(new URL('../../../bench/load/resp-keys.c', import.meta.url)),
].find((path) => existsSync(path))

let binary: Promise<string> | undefined
let buildDir: string | undefined
process.once('exit', () => {
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true })
})

function compiled(): Promise<string> {
  binary ??= (async () => {
    if (SOURCE === undefined) throw new Error('bench/load/resp-keys.c is not in this checkout')
    buildDir = mkdtempSync(join(tmpdir(), 'redis-proxy-bench-c-'))
    const out = join(buildDir, 'resp-keys')
    const done = await run('gcc', ['-O2', '-Wall', '-o', out, SOURCE, '-lm'], {
      timeoutMs: 60_000,
    })
    if (done.code !== 0) throw new Error(`gcc could not build ${SOURCE}: ${done.stderr}`)
    return out
  })()
  return binary
}

/**
 * Keys are `key:` and 12 digits, 16 B: the names redis-benchmark `-r` uses,
 * so a key space filled by one tool is the one the other asks for.
 */
export function benchKey(n: number): string {
  return `key:${String(n).padStart(12, '0')}`
}
export const BENCH_KEY_BYTES = 16

export type KeyOrder = 'zipf' | 'uniform' | 'each'

export type RespKeysResult = RespLoadResult & {
  requests: number
  seconds: number
  nils: number
  errors: number
}

async function respKeys(args: string[], timeoutMs: number): Promise<RespKeysResult> {
  const done = await run(await compiled(), args, { timeoutMs })
  const line = /^BENCH_JSON (.*)$/m.exec(done.stdout)
  if (done.code !== 0 || line === null) {
    throw new Error(`resp-keys ${args.join(' ')} failed (${done.code}): ${done.stderr}`)
  }
  return JSON.parse(line[1] as string) as RespKeysResult
}

/**
 * GETs over `keyspace` keys: Zipf-distributed (s = `zipfS`, ranks shuffled
 * over the keys by a fixed seed, so every run asks the same sequence),
 * uniform, or each key once in order. Stops after `requests` or `seconds`.
 */
export function respKeysGet(options: {
  port: number
  clients: number
  pipeline: number
  requests: number
  keyspace: number
  order: KeyOrder
  zipfS?: number
  seconds: number
  /** The first key's number: keys are first..first+keyspace-1. @default 0 */
  first?: number
}): Promise<RespKeysResult> {
  return respKeys(
    [
      '-p',
      String(options.port),
      '-c',
      String(options.clients),
      '-P',
      String(options.pipeline),
      '-n',
      String(options.requests),
      '-k',
      String(options.keyspace),
      '-m',
      options.order,
      '-s',
      String(options.zipfS ?? 0.99),
      '-t',
      String(options.seconds),
      '-o',
      String(options.first ?? 0),
    ],
    (options.seconds + 30) * 1000,
  )
}

/** SET of every key first..first+count-1 once, `valueBytes` of 'v' each: fills Redis. */
export async function respKeysFill(
  port: number,
  count: number,
  valueBytes: number,
  first = 0,
): Promise<void> {
  const result = await respKeys(
    [
      ...['-p', String(port), '-c', '4', '-P', '64', '-m', 'set', '-o', String(first)],
      ...['-n', String(count), '-k', String(count), '-d', String(valueBytes), '-t', '300'],
    ],
    330_000,
  )
  if (result.requests !== count) {
    throw new Error(`wrote ${result.requests} of ${count} keys`)
  }
}
