import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run } from '../lib/processes.js'

/** What one load run measured. Latencies in milliseconds. */
export type HttpLoadResult = {
  requests: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  /** Socket errors and timeouts. */
  errors: number
  /** Responses with a status outside 2xx. */
  non2xx: number
}

export type HttpLoadOptions = {
  /** `http://127.0.0.1:port` */
  origin: string
  connections: number
  seconds: number
  /**
   * The path of every request, or a key space: `prefix + n` with n cycling
   * from..count-1, 0..count-1 in order, or drawn uniformly at random; n
   * zero-padded to `pad` digits where given.
   */
  path:
    | string
    | {
        prefix: string
        count: number
        order: 'cycle' | 'random' /** first n of a cycle */
        from?: number
        pad?: number
      }
}

export type HttpLoad = { name: string; run(options: HttpLoadOptions): Promise<HttpLoadResult> }

/** wrk where installed (it costs the machine far less CPU than a Node client), else autocannon. */
export function pickHttpLoad(prefer?: string): HttpLoad {
  const hasWrk = spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined
  if (prefer === 'autocannon' || !hasWrk) return autocannon
  return wrk
}

// One wrk thread: the server under test is one Node thread, and the machine
// has two cores, so each gets one. The Lua script picks the paths and prints
// the summary as one JSON line.
const WRK_SCRIPT = `
local prefix, count, random, i, digits = nil, 0, false, 0, '%d'
function init(args)
  if args[1] ~= nil then
    prefix = args[1]
    count = tonumber(args[2])
    random = args[3] == 'random'
    i = tonumber(args[4])
    digits = '%0' .. args[5] .. 'd'
    math.randomseed(12345)
  end
end
function request()
  if prefix == nil then return wrk.request() end
  local n
  if random then n = math.random(0, count - 1) else n = i % count; i = i + 1 end
  return wrk.format('GET', prefix .. string.format(digits, n))
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`

const wrk: HttpLoad = {
  name: 'wrk',
  async run(options) {
    const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-bench-'))
    try {
      const script = join(dir, 'bench.lua')
      writeFileSync(script, WRK_SCRIPT)
      const args = [
        '-t1',
        `-c${options.connections}`,
        `-d${options.seconds}s`,
        '--timeout',
        '5s',
        '-s',
        script,
      ]
      if (typeof options.path === 'string') {
        args.push(options.origin + options.path)
      } else {
        const { prefix, count, order, from = 0, pad = 0 } = options.path
        args.push(
          `${options.origin}/`,
          '--',
          ...[prefix, String(count), order, String(from), String(pad)],
        )
      }
      const done = await run('wrk', args, { timeoutMs: (options.seconds + 30) * 1000 })
      const line = /^BENCH_JSON (.*)$/m.exec(done.stdout)
      if (done.code !== 0 || line === null) {
        throw new Error(`wrk failed (${done.code}): ${done.stderr || done.stdout}`)
      }
      const raw = JSON.parse(line[1] as string) as Record<string, number>
      const seconds = (raw.duration_us ?? 0) / 1e6
      const requests = raw.requests ?? 0
      return {
        requests,
        seconds,
        rps: requests / seconds,
        p50Ms: (raw.p50_us ?? 0) / 1000,
        p99Ms: (raw.p99_us ?? 0) / 1000,
        errors: raw.errors ?? 0,
        non2xx: raw.non2xx ?? 0,
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  },
}

const AUTOCANNON_CHILD = fileURLToPath(new URL('./autocannon-child.js', import.meta.url))

// autocannon runs in a child process so its CPU use is not the bench runner's.
const autocannon: HttpLoad = {
  name: 'autocannon',
  async run(options) {
    const done = await run(process.execPath, [AUTOCANNON_CHILD, JSON.stringify(options)], {
      timeoutMs: (options.seconds + 30) * 1000,
    })
    const line = /^BENCH_JSON (.*)$/m.exec(done.stdout)
    if (done.code !== 0 || line === null) {
      throw new Error(`autocannon failed (${done.code}): ${done.stderr || done.stdout}`)
    }
    return JSON.parse(line[1] as string) as HttpLoadResult
  },
}
