import { run } from '../lib/processes.js'

export type RespLoadResult = { rps: number; p50Ms: number; p99Ms: number }

export type RespLoadOptions = {
  port: number
  clients: number
  pipeline: number
  requests: number
  /** Keys drawn at random from this many (`key:__rand_int__`); omitted: one key. */
  keyspace?: number
  /** Value size of the keys redis-benchmark writes itself (`-d`). */
  valueSize?: number
  /** Hard stop: redis-benchmark retries a dead port forever. */
  timeoutMs: number
  /** `--cluster`: redis-benchmark reads the slot map and sends each command to its node. */
  cluster?: boolean
}

/** `redis-benchmark -t get`: the RESP load for the sidecar and for Redis direct alike. */
export async function redisBenchmarkGet(options: RespLoadOptions): Promise<RespLoadResult> {
  const result = (await redisBenchmarkTests({ ...options, tests: ['get'] })).get('GET')
  if (result === undefined) throw new Error('redis-benchmark reported no GET result')
  return result
}

/**
 * `redis-benchmark -t <tests>` in one run: each test's result by its name as
 * redis-benchmark prints it (`SET`, `INCR`, `LPUSH`, `LPOP`, `MSET (10 keys)`...).
 */
export async function redisBenchmarkTests(
  options: RespLoadOptions & { tests: readonly string[] },
): Promise<Map<string, RespLoadResult>> {
  const args = [
    ...(options.cluster === true ? ['--cluster'] : []),
    '-h',
    '127.0.0.1',
    '-p',
    String(options.port),
    '-t',
    options.tests.join(','),
    '-c',
    String(options.clients),
    '-P',
    String(options.pipeline),
    '-n',
    String(options.requests),
    '--csv',
  ]
  if (options.keyspace !== undefined) args.push('-r', String(options.keyspace))
  if (options.valueSize !== undefined) args.push('-d', String(options.valueSize))
  const done = await run('redis-benchmark', args, { timeoutMs: options.timeoutMs })
  const results = new Map<string, RespLoadResult>()
  for (const line of done.stdout.split('\n')) {
    const cells = line.split('","').map((cell) => cell.replaceAll('"', ''))
    const [name, rps, , , p50, , p99] = cells
    if (name === undefined || name === 'test' || rps === undefined) continue
    results.set(name, { rps: Number(rps), p50Ms: Number(p50), p99Ms: Number(p99) })
  }
  if (done.code !== 0 || results.size === 0) {
    throw new Error(`redis-benchmark failed (${done.code}): ${done.stderr || done.stdout}`)
  }
  return results
}
