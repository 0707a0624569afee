import { cleanEnv, makeValidator, str } from 'envalid'
import type { Users } from './auth/acl.js'
import { AUTH_CONFIG_NAMES, loadUsers, type ReadTextFile } from './auth/secrets.js'
import { MAX_CAPACITY } from './cache/lru-cache.js'
import { prefixOverlap } from './keys.js'
import { splitAddress } from './redis/cluster/topology.js'
import type { Address } from './redis/source.js'

/** Validated, frozen configuration. Built once at start-up; nothing reads process.env after. */
export type Config = Readonly<{
  http: Readonly<{
    host: string
    port: number
    redisUrl: string
    /** A request's headers must have arrived this long after it began (or the connection opened); 0 never. */
    headersTimeoutMs: number
    /** The whole request must have arrived this long after it began; 0 never. */
    requestTimeoutMs: number
    /** An idle keep-alive connection is closed after this long; 0 never. */
    keepAliveTimeoutMs: number
  }>
  /**
   * A Redis reached over the Upstash REST protocol instead of TCP, for edge
   * runtimes without sockets. When set, the Worker reads through it and
   * ignores `http.redisUrl`; the Node servers always use TCP.
   */
  rest: RestConfig | undefined
  /**
   * A Redis Cluster behind the proxy (REDIS_CLUSTER_NODES): its seed nodes as
   * URLs with REDIS_URL's scheme and credentials. Undefined: one Redis at
   * REDIS_URL.
   */
  cluster: ClusterConfig | undefined
  tcp: Readonly<{
    host: string
    port: number
    redisUrl: string
    idleTimeoutMs: number
    /** A connection that has not completed its first command by then is closed; 0 never. */
    handshakeTimeoutMs: number
  }>
  cache: Readonly<{
    capacity: number
    ttlMs: number
    invalidation: InvalidationSetting
    tracking: TrackingSetting
    /** CACHE_PREFIXES: the keys the cache may hold; empty for every key. */
    prefixes: readonly string[]
  }>
  maxClients: number
  /** Clients on backend connections of their own at once (transactions, blocking pops, subscriptions). */
  maxBackendConnections: number
  maxParallel: number
  maxQueue: number
  redis: Readonly<{
    commandTimeoutMs: number
    connectTimeoutMs: number
    /** Silence, while replies are owed, after which the native client replaces its connection. */
    livenessTimeoutMs: number
  }>
  shutdownTimeoutMs: number
  /**
   * IDLE_GC_INTERVAL: every this many ms the Node runtime looks at how busy
   * its event loop was; an interval busy under 1% ends with one full garbage
   * collection, so V8 gives its young generation back (shared/idle-gc.ts).
   * 0 never.
   * @default 5000
   */
  idleGcIntervalMs: number
  logLevel: LogLevel
  /** The standalone /metrics, /healthz, /readyz listener; off while `port` is undefined. */
  metrics: Readonly<{ host: string; port: number | undefined }>
  auth: Readonly<{
    /** Who may do what (PROXY_PASSWORD, PROXY_PASSWORD_FILE, PROXY_ACL_FILE, PROXY_ACL). */
    users: Users
    /**
     * Whether any credentials were configured (a password or an ACL): without
     * them every listener defaults to loopback and refuses any other address.
     */
    configured: boolean
    /** PROXY_TRUSTED_NETWORK: listen beyond loopback without credentials. */
    trustedNetwork: boolean
  }>
  /** TLS files (paths); their contents are read and checked by shared/tls-files.ts, Node only. */
  tls: TlsConfig
  /**
   * Node processes serving the listeners (WORKERS): 1 is one process, as
   * always; more is a node:cluster primary forking that many workers, each
   * with its own cache and connections. `auto` is one per core available
   * (os.availableParallelism()), resolved by the Node entry: a runtime
   * without processes has no such number.
   * @default 1
   */
  workers: WorkersSetting
  /**
   * The primary found through Redis Sentinel (REDIS_SENTINELS): the Node
   * backend connects where the sentinels say, REDIS_URL giving only the
   * credentials, database and scheme. Undefined: REDIS_URL's host and port.
   */
  sentinel: SentinelConfig | undefined
}>

export type SentinelConfig = Readonly<{
  /** Asked in this order; the first that answers is asked first from then on. */
  sentinels: readonly Address[]
  /** The name the sentinels monitor the primary under (`sentinel monitor <name> ...`). */
  masterName: string
  /** The sentinels' own credentials (`requirepass`/ACL in sentinel.conf), not the data nodes'. */
  username: string | undefined
  password: string | undefined
}>

export type WorkersSetting = number | 'auto'

/** More processes than this is a typo, not a machine: each holds its own cache and connections. */
export const MAX_WORKERS = 1024

/**
 * `listener`: the proxy's own certificate (RESP, HTTP and METRICS_PORT), and
 * with `caFile` the CA client certificates must be signed by. `backend`:
 * what a rediss:// connection trusts and presents.
 */
export type TlsConfig = Readonly<{
  listener: Readonly<{ certFile: string; keyFile: string; caFile: string | undefined }> | undefined
  backend: Readonly<{
    caFile: string | undefined
    certFile: string | undefined
    keyFile: string | undefined
    servername: string | undefined
  }>
}>

export type RestConfig = Readonly<{ url: string; token: string }>

export type ClusterConfig = Readonly<{
  /** Where the topology is first read from: any reachable one will do. */
  seeds: readonly string[]
  /** How often the slot map is read again when nothing prompted it (REDIS_CLUSTER_REFRESH). */
  refreshMs: number
}>

/** `on`: Redis tells the cache about every write (CLIENT TRACKING); `off`: expiry only. */
export const INVALIDATION_SETTINGS = ['on', 'off'] as const
export type InvalidationSetting = (typeof INVALIDATION_SETTINGS)[number]

/**
 * How Redis tracks for the cache (CLIENT TRACKING's two modes):
 * - `bcast`: Redis tells about every write in the keyspace, remembering
 *   nothing per key read (no CPU per read, no tracking table);
 * - `keys`: Redis remembers each key the proxy read (its default mode) and
 *   tells only about those: a table entry and its CPU per key read.
 */
export const TRACKING_SETTINGS = ['bcast', 'keys'] as const
export type TrackingSetting = (typeof TRACKING_SETTINGS)[number]

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** Thrown for a bad variable; its message is the one line start-up prints. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

const DIGITS = /^[0-9]+$/

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return makeValidator<number>((raw: string) => {
    const value = DIGITS.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`expected an integer from ${min} to ${max}`)
    }
    return value
  })
}

const port = integer(1, 65535)

// Comma-separated, taken as written (a key may hold spaces); none is all keys.
const prefixes = makeValidator<readonly string[]>((raw: string) => {
  if (raw === '') return []
  const list = raw.split(',')
  if (list.includes('')) throw new Error('expected key prefixes separated by commas, none empty')
  const overlap = prefixOverlap(list)
  if (overlap !== undefined) throw new Error(`${overlap} (Redis refuses overlapping prefixes)`)
  return list
})

const workers = makeValidator<WorkersSetting>((raw: string) => {
  if (raw.trim() === 'auto') return 'auto'
  const value = DIGITS.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
  if (!Number.isSafeInteger(value) || value < 1 || value > MAX_WORKERS) {
    throw new Error(`expected an integer from 1 to ${MAX_WORKERS}, or auto`)
  }
  return value
})

/**
 * Node's timers take at most 2^31-1 ms; a longer delay is silently replaced
 * by 1 ms (with a warning), so a larger timeout would fire at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1
const milliseconds = (min: number) => integer(min, MAX_TIMER_MS)

// Redis's own bound for `databases` is INT_MAX; whether this server has that
// many is known only once connected (SELECT refuses, see RespSource).
const DATABASE = /^\/?(?:0|[1-9][0-9]{0,9})?$/

const redisUrl = makeValidator<string>((raw: string) => {
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new Error('expected a redis:// or rediss:// URL')
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error('expected a redis:// or rediss:// URL')
  }
  if (
    !DATABASE.test(parsed.pathname) ||
    Number(parsed.pathname.slice(1) || 0) > MAX_TIMER_MS ||
    parsed.search !== '' ||
    parsed.hash !== ''
  ) {
    throw new Error('expected a database number as the path (redis://host:port/0)')
  }
  return raw
})

/**
 * The token travels in a header, so plain http is accepted only on loopback
 * (a local REST bridge); anything else must be https.
 */
const restUrl = makeValidator<string>((raw: string) => {
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new Error('expected an https:// URL')
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(parsed.hostname)
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
    throw new Error('expected an https:// URL (http:// only on localhost)')
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new Error('expected a URL without query or fragment')
  }
  return raw.replace(/\/+$/, '')
})

/** `host:port,host:port`: the seeds a Redis Cluster's topology is first asked of. */
const clusterNodes = makeValidator<string[]>((raw: string) => {
  const nodes = raw.split(',').map((node) => node.trim())
  for (const node of nodes) {
    const address = splitAddress(node)
    if (address === undefined || address.host === '') {
      throw new Error(`expected host:port[,host:port...], got \`${node}\``)
    }
  }
  return nodes
})

const secret = makeValidator<string>((raw: string) => {
  if (raw.trim() === '') throw new Error('expected a non-empty token')
  return raw.trim()
})

const host = makeValidator<string>((raw: string) => {
  if (raw.trim() === '') throw new Error('expected a host name or address')
  return raw.trim()
})

const flag = makeValidator<boolean>((raw: string) => {
  if (raw === 'true') return true
  if (raw === 'false') return false
  throw new Error('expected true or false')
})

/** Where every listener goes when no credentials are configured. */
export const LOOPBACK = '127.0.0.1'
/** Where they go by default once credentials are. */
const ANY_ADDRESS = '0.0.0.0'

/** Sentinel's own default port. */
const SENTINEL_PORT = 26379

/**
 * `host:port,host:port,...`; a host alone is on Sentinel's port (26379); an
 * IPv6 address goes in brackets (`[::1]:26379`).
 */
const sentinelList = makeValidator<readonly Address[]>((raw: string) => {
  const entries = raw.split(',').map((entry) => entry.trim())
  const sentinels: Address[] = []
  for (const entry of entries) {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+))(?::([0-9]+))?$/.exec(entry)
    const host = match?.[1] ?? match?.[2]
    const port = match?.[3] === undefined ? SENTINEL_PORT : Number(match[3])
    if (host === undefined || !(port >= 1 && port <= 65535)) {
      throw new Error(
        `expected host:port entries separated by commas (redis-sentinel-1:26379,10.0.0.2:26379), got ${JSON.stringify(entry)}`,
      )
    }
    if (sentinels.some((known) => known.host === host && known.port === port)) {
      throw new Error(`${host}:${port} is listed twice`)
    }
    sentinels.push({ host, port })
  }
  return sentinels
})

/** A name `sentinel monitor` accepts: one word (Sentinel's messages are split at spaces). */
const masterName = makeValidator<string>((raw: string) => {
  if (!/^[^\s]+$/.test(raw)) throw new Error('expected the monitored name, one word')
  return raw
})

/** Passwords are taken as they are: spaces are characters like any other. */
const password = makeValidator<string>((raw: string) => {
  if (raw === '') throw new Error('expected a non-empty password')
  return raw
})

const file = makeValidator<string>((raw: string) => {
  if (raw.trim() === '') throw new Error('expected a file path')
  return raw.trim()
})

const specs = {
  REDIS_URL: redisUrl({ default: 'redis://127.0.0.1:6379' }),
  REDIS_CLUSTER_NODES: clusterNodes({ default: undefined }),
  REDIS_CLUSTER_REFRESH: milliseconds(100)({ default: 5000 }),
  BACKING_REDIS_HOST_HTTP: host({ default: undefined }),
  BACKING_REDIS_PORT_HTTP: port({ default: undefined }),
  BACKING_REDIS_HOST_TCP: host({ default: undefined }),
  BACKING_REDIS_PORT_TCP: port({ default: undefined }),
  UPSTASH_REDIS_REST_URL: restUrl({ default: undefined }),
  UPSTASH_REDIS_REST_TOKEN: secret({ default: undefined }),
  // Unset, the listen addresses depend on whether credentials are configured.
  PROXY_HOST_HTTP: host({ default: undefined }),
  PROXY_PORT_HTTP: port({ default: 5000 }),
  PROXY_HOST_TCP: host({ default: undefined }),
  PROXY_PORT_TCP: port({ default: 4000 }),
  CACHE_CAPACITY: integer(1, MAX_CAPACITY)({ default: 100_000 }),
  CACHE_GLOBAL_EXPIRY: integer(1)({ default: 60_000 }),
  CACHE_INVALIDATION: str({ default: 'on', choices: INVALIDATION_SETTINGS }),
  CACHE_TRACKING: str({ default: 'bcast', choices: TRACKING_SETTINGS }),
  CACHE_PREFIXES: prefixes({ default: [] }),
  MAX_CLIENTS: integer(1, 1_000_000)({ default: 10_000 }),
  MAX_BACKEND_CONNECTIONS: integer(0, 1_000_000)({ default: 1000 }),
  // As many misses as one pipelining client may have owed (4,096): reads
  // share one pipelined connection, so more in flight costs Redis nothing
  // extra, and 50 clients at pipeline 16 (800 misses) measured 116-126k GET/s
  // here against 79-91k at 256, which queued most of them for a round trip.
  MAX_PARALLEL: integer(1, 100_000)({ default: 4096 }),
  MAX_QUEUE: integer(0, 10_000_000)({ default: 10_000 }),
  REDIS_COMMAND_TIMEOUT: milliseconds(1)({ default: 1000 }),
  REDIS_CONNECT_TIMEOUT: milliseconds(1)({ default: 2000 }),
  // Unset, it is the larger of 5000 and REDIS_COMMAND_TIMEOUT, so raising the
  // command timeout alone stays valid.
  REDIS_LIVENESS_TIMEOUT: milliseconds(1)({ default: undefined }),
  IDLE_TIMEOUT: milliseconds(0)({ default: 0 }),
  HTTP_HEADERS_TIMEOUT: milliseconds(0)({ default: 10_000 }),
  HTTP_REQUEST_TIMEOUT: milliseconds(0)({ default: 30_000 }),
  HTTP_KEEPALIVE_TIMEOUT: milliseconds(0)({ default: 5000 }),
  RESP_HANDSHAKE_TIMEOUT: milliseconds(0)({ default: 10_000 }),
  SHUTDOWN_TIMEOUT: milliseconds(0)({ default: 10_000 }),
  // V8 judges the allocation rate over its last 5 s and shrinks its young
  // generation only when that rate is low: a shorter interval mostly finds it
  // still counting the traffic that just ended (and backs off, see idle-gc.ts).
  IDLE_GC_INTERVAL: milliseconds(0)({ default: 5000 }),
  LOG_LEVEL: str({ default: 'info', choices: LOG_LEVELS }),
  METRICS_HOST: host({ default: undefined }),
  METRICS_PORT: port({ default: undefined }),
  PROXY_TRUSTED_NETWORK: flag({ default: false }),
  PROXY_TLS_CERT_FILE: file({ default: undefined }),
  PROXY_TLS_KEY_FILE: file({ default: undefined }),
  PROXY_TLS_CA_FILE: file({ default: undefined }),
  REDIS_TLS_CA_FILE: file({ default: undefined }),
  REDIS_TLS_CERT_FILE: file({ default: undefined }),
  REDIS_TLS_KEY_FILE: file({ default: undefined }),
  REDIS_TLS_SERVERNAME: host({ default: undefined }),
  WORKERS: workers({ default: 1 }),
  REDIS_SENTINELS: sentinelList({ default: undefined }),
  REDIS_SENTINEL_MASTER: masterName({ default: undefined }),
  REDIS_SENTINEL_USERNAME: host({ default: undefined }),
  REDIS_SENTINEL_PASSWORD: password({ default: undefined }),
}

/** Every variable the proxy reads, for tooling that must agree with it (compose, manifests). */
export const CONFIG_NAMES: readonly string[] = Object.freeze([
  ...Object.keys(specs),
  ...AUTH_CONFIG_NAMES,
])

/**
 * Validates every variable; the first bad one throws a ConfigError naming it
 * and its value. `readFile` reads PROXY_PASSWORD_FILE and PROXY_ACL_FILE; a
 * runtime without a filesystem (the Worker) passes none, and those variables
 * are then an error.
 */
export function loadConfig(
  env: Record<string, string | undefined>,
  readFile?: ReadTextFile,
): Config {
  let clean: ReturnType<typeof cleanEnv<typeof specs>> | undefined
  let failure: string | undefined
  clean = cleanEnv(env, specs, {
    reporter: ({ errors }) => {
      const [name, error] = Object.entries(errors)[0] ?? []
      if (name === undefined) return
      failure = `Invalid ${name}=${JSON.stringify(env[name] ?? '')}: ${(error as Error).message}`
    },
  })
  if (failure !== undefined) throw new ConfigError(failure)
  clean = clean as NonNullable<typeof clean>
  const rest = restConfig(clean.UPSTASH_REDIS_REST_URL, clean.UPSTASH_REDIS_REST_TOKEN)
  const livenessTimeoutMs = livenessTimeout(
    clean.REDIS_LIVENESS_TIMEOUT,
    clean.REDIS_COMMAND_TIMEOUT,
    env.REDIS_LIVENESS_TIMEOUT,
  )

  const sentinel = sentinelConfig(clean, env)
  const cluster = clusterConfig(clean, env)
  if (sentinel !== undefined && cluster !== undefined) {
    // A cluster elects its own primaries; Sentinel watches one primary.
    throw new ConfigError(
      `Invalid REDIS_SENTINELS=${JSON.stringify(env.REDIS_SENTINELS ?? '')}: not taken with REDIS_CLUSTER_NODES (a Redis Cluster fails over by itself)`,
    )
  }
  const http = backingUrl(
    clean.REDIS_URL,
    clean.BACKING_REDIS_HOST_HTTP,
    clean.BACKING_REDIS_PORT_HTTP,
  )
  const tcp = backingUrl(
    clean.REDIS_URL,
    clean.BACKING_REDIS_HOST_TCP,
    clean.BACKING_REDIS_PORT_TCP,
  )
  const headersTimeoutMs = clean.HTTP_HEADERS_TIMEOUT
  const requestTimeoutMs = clean.HTTP_REQUEST_TIMEOUT
  // node:http throws on this pair when the server is created; say so at start-up instead.
  if (headersTimeoutMs > 0 && requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(
      `Invalid HTTP_HEADERS_TIMEOUT="${env.HTTP_HEADERS_TIMEOUT ?? headersTimeoutMs}": expected at most HTTP_REQUEST_TIMEOUT (${requestTimeoutMs}) unless one of them is 0`,
    )
  }
  const users = loadUsers(env, readFile)
  const auth = {
    users,
    // An empty variable counts as unset, as in secrets.ts.
    configured: users.requiresAuth() || Boolean(env.PROXY_ACL_FILE) || Boolean(env.PROXY_ACL),
    trustedNetwork: clean.PROXY_TRUSTED_NETWORK,
  }
  const listen = (name: string, value: string | undefined): string =>
    listenAddress(name, value, auth.configured, auth.trustedNetwork)
  return deepFreeze({
    http: {
      host: listen('PROXY_HOST_HTTP', clean.PROXY_HOST_HTTP),
      port: clean.PROXY_PORT_HTTP,
      redisUrl: http,
      headersTimeoutMs,
      requestTimeoutMs,
      keepAliveTimeoutMs: clean.HTTP_KEEPALIVE_TIMEOUT,
    },
    rest,
    cluster,
    tcp: {
      host: listen('PROXY_HOST_TCP', clean.PROXY_HOST_TCP),
      port: clean.PROXY_PORT_TCP,
      redisUrl: tcp,
      idleTimeoutMs: clean.IDLE_TIMEOUT,
      handshakeTimeoutMs: clean.RESP_HANDSHAKE_TIMEOUT,
    },
    cache: {
      capacity: clean.CACHE_CAPACITY,
      ttlMs: clean.CACHE_GLOBAL_EXPIRY,
      invalidation: clean.CACHE_INVALIDATION as InvalidationSetting,
      tracking: clean.CACHE_TRACKING as TrackingSetting,
      prefixes: clean.CACHE_PREFIXES,
    },
    maxClients: clean.MAX_CLIENTS,
    maxBackendConnections: clean.MAX_BACKEND_CONNECTIONS,
    maxParallel: clean.MAX_PARALLEL,
    maxQueue: clean.MAX_QUEUE,
    redis: {
      commandTimeoutMs: clean.REDIS_COMMAND_TIMEOUT,
      connectTimeoutMs: clean.REDIS_CONNECT_TIMEOUT,
      livenessTimeoutMs,
    },
    shutdownTimeoutMs: clean.SHUTDOWN_TIMEOUT,
    idleGcIntervalMs: clean.IDLE_GC_INTERVAL,
    logLevel: clean.LOG_LEVEL as LogLevel,
    metrics: { host: listen('METRICS_HOST', clean.METRICS_HOST), port: clean.METRICS_PORT },
    auth,
    tls: tlsConfig(clean, env),
    workers: clean.WORKERS,
    sentinel,
  })
}

/**
 * With sentinels, the sentinels say where the primary is: REDIS_URL keeps
 * its credentials, database and scheme, and its host and port are not used.
 * The per-server host/port names exist only to name a server, so with
 * sentinels they are a contradiction, not a choice.
 */
function sentinelConfig(
  clean: {
    REDIS_SENTINELS?: readonly Address[] | undefined
    REDIS_SENTINEL_MASTER?: string | undefined
    REDIS_SENTINEL_USERNAME?: string | undefined
    REDIS_SENTINEL_PASSWORD?: string | undefined
    BACKING_REDIS_HOST_HTTP?: string | undefined
    BACKING_REDIS_PORT_HTTP?: number | undefined
    BACKING_REDIS_HOST_TCP?: string | undefined
    BACKING_REDIS_PORT_TCP?: number | undefined
  },
  env: Record<string, string | undefined>,
): SentinelConfig | undefined {
  const sentinels = clean.REDIS_SENTINELS
  if (sentinels === undefined) {
    for (const name of [
      'REDIS_SENTINEL_MASTER',
      'REDIS_SENTINEL_USERNAME',
      'REDIS_SENTINEL_PASSWORD',
    ] as const) {
      if (clean[name] !== undefined) {
        throw new ConfigError(
          `Invalid ${name}=${JSON.stringify(name === 'REDIS_SENTINEL_PASSWORD' ? '***' : (env[name] ?? ''))}: needs REDIS_SENTINELS`,
        )
      }
    }
    return undefined
  }
  if (clean.REDIS_SENTINEL_MASTER === undefined) {
    throw new ConfigError('Invalid REDIS_SENTINEL_MASTER="": required when REDIS_SENTINELS is set')
  }
  if (clean.REDIS_SENTINEL_USERNAME !== undefined && clean.REDIS_SENTINEL_PASSWORD === undefined) {
    throw new ConfigError(
      'Invalid REDIS_SENTINEL_PASSWORD="": required when REDIS_SENTINEL_USERNAME is set',
    )
  }
  refusePerServerHosts(clean, env, 'the sentinels (REDIS_SENTINELS) say where the primary is')
  return {
    sentinels,
    masterName: clean.REDIS_SENTINEL_MASTER,
    username: clean.REDIS_SENTINEL_USERNAME,
    password: clean.REDIS_SENTINEL_PASSWORD,
  }
}

/** A certificate without its key (or the reverse) is a mistake, not a choice; so is a CA alone. */
function tlsConfig(
  clean: {
    PROXY_TLS_CERT_FILE?: string | undefined
    PROXY_TLS_KEY_FILE?: string | undefined
    PROXY_TLS_CA_FILE?: string | undefined
    REDIS_TLS_CA_FILE?: string | undefined
    REDIS_TLS_CERT_FILE?: string | undefined
    REDIS_TLS_KEY_FILE?: string | undefined
    REDIS_TLS_SERVERNAME?: string | undefined
    REDIS_URL: string
  },
  env: Record<string, string | undefined>,
): TlsConfig {
  // Backend TLS settings with a plain redis:// URL would be ignored, and the
  // operator would believe the hop encrypted.
  if (!clean.REDIS_URL.startsWith('rediss:')) {
    for (const name of [
      'REDIS_TLS_CA_FILE',
      'REDIS_TLS_CERT_FILE',
      'REDIS_TLS_SERVERNAME',
    ] as const) {
      if (clean[name] !== undefined) {
        throw new ConfigError(
          `Invalid ${name}=${JSON.stringify(env[name] ?? '')}: needs a rediss:// REDIS_URL`,
        )
      }
    }
  }
  pair(
    'PROXY_TLS_CERT_FILE',
    clean.PROXY_TLS_CERT_FILE,
    'PROXY_TLS_KEY_FILE',
    clean.PROXY_TLS_KEY_FILE,
  )
  pair(
    'REDIS_TLS_CERT_FILE',
    clean.REDIS_TLS_CERT_FILE,
    'REDIS_TLS_KEY_FILE',
    clean.REDIS_TLS_KEY_FILE,
  )
  const certFile = clean.PROXY_TLS_CERT_FILE
  const keyFile = clean.PROXY_TLS_KEY_FILE
  if (clean.PROXY_TLS_CA_FILE !== undefined && certFile === undefined) {
    throw new ConfigError(
      'Invalid PROXY_TLS_CERT_FILE="": required when PROXY_TLS_CA_FILE is set (client certificates need a TLS listener)',
    )
  }
  return {
    listener:
      certFile === undefined || keyFile === undefined
        ? undefined
        : { certFile, keyFile, caFile: clean.PROXY_TLS_CA_FILE },
    backend: {
      caFile: clean.REDIS_TLS_CA_FILE,
      certFile: clean.REDIS_TLS_CERT_FILE,
      keyFile: clean.REDIS_TLS_KEY_FILE,
      servername: clean.REDIS_TLS_SERVERNAME,
    },
  }
}

function pair(
  name: string,
  value: string | undefined,
  other: string,
  otherValue: string | undefined,
) {
  if (value !== undefined && otherValue === undefined) {
    throw new ConfigError(`Invalid ${other}="": required when ${name} is set`)
  }
  if (value === undefined && otherValue !== undefined) {
    throw new ConfigError(`Invalid ${name}="": required when ${other} is set`)
  }
}

/**
 * Safe by default: a proxy anyone may read from listens only where only this
 * machine can reach it, and a wider address must be asked for knowing that.
 * Names are not resolved here: anything but a loopback literal or
 * `localhost` counts as reachable from elsewhere.
 */
function listenAddress(
  name: string,
  value: string | undefined,
  configured: boolean,
  trustedNetwork: boolean,
): string {
  if (value === undefined) return configured ? ANY_ADDRESS : LOOPBACK
  if (configured || trustedNetwork || isLoopback(value)) return value
  throw new ConfigError(
    `Invalid ${name}=${JSON.stringify(value)}: no password is set, so only loopback is allowed; set PROXY_PASSWORD (or PROXY_PASSWORD_FILE, PROXY_ACL_FILE), or PROXY_TRUSTED_NETWORK=true if everyone who can reach it may read every key`,
  )
}

function isLoopback(address: string): boolean {
  const bare = address.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

/**
 * A liveness window shorter than the command timeout would replace the
 * connection (and, with tracking, clear the cache) for a reply that is merely
 * slow, which the command timeout alone should answer.
 */
function livenessTimeout(
  value: number | undefined,
  commandTimeoutMs: number,
  raw: string | undefined,
): number {
  if (value === undefined) return Math.max(5000, commandTimeoutMs)
  if (value < commandTimeoutMs) {
    throw new ConfigError(
      `Invalid REDIS_LIVENESS_TIMEOUT=${JSON.stringify(raw ?? '')}: expected at least REDIS_COMMAND_TIMEOUT (${commandTimeoutMs})`,
    )
  }
  return value
}

/**
 * The seeds as URLs carrying REDIS_URL's scheme and credentials (every node
 * of a cluster takes the same). A cluster has one database, 0, and one set
 * of nodes: a per-server host or port beside it would be ignored.
 */
function clusterConfig(
  clean: {
    REDIS_URL: string
    REDIS_CLUSTER_NODES?: string[] | undefined
    REDIS_CLUSTER_REFRESH: number
    BACKING_REDIS_HOST_HTTP?: string | undefined
    BACKING_REDIS_PORT_HTTP?: number | undefined
    BACKING_REDIS_HOST_TCP?: string | undefined
    BACKING_REDIS_PORT_TCP?: number | undefined
  },
  env: Record<string, string | undefined>,
): ClusterConfig | undefined {
  const nodes = clean.REDIS_CLUSTER_NODES
  if (nodes === undefined) return undefined
  const db = new URL(clean.REDIS_URL).pathname.replace(/^\//, '')
  if (db !== '' && db !== '0') {
    throw new ConfigError(
      `Invalid REDIS_URL=${JSON.stringify(env.REDIS_URL ?? '')}: a Redis Cluster has only database 0 (REDIS_CLUSTER_NODES is set)`,
    )
  }
  refusePerServerHosts(
    clean,
    env,
    'not taken with REDIS_CLUSTER_NODES (every interface reads the cluster)',
  )
  return {
    seeds: nodes.map((node) => {
      const { host, port } = splitAddress(node) as { host: string; port: number }
      return backingUrl(clean.REDIS_URL, host.includes(':') ? `[${host}]` : host, port)
    }),
    refreshMs: clean.REDIS_CLUSTER_REFRESH,
  }
}

/** The REST URL and its token come as a pair: one without the other is a mistake, not a choice. */
function restConfig(url: string | undefined, token: string | undefined): RestConfig | undefined {
  if (url === undefined && token === undefined) return undefined
  if (token === undefined) {
    throw new ConfigError(
      'Invalid UPSTASH_REDIS_REST_TOKEN="": required when UPSTASH_REDIS_REST_URL is set',
    )
  }
  if (url === undefined) {
    throw new ConfigError(
      'Invalid UPSTASH_REDIS_REST_URL="": required when UPSTASH_REDIS_REST_TOKEN is set',
    )
  }
  return { url, token }
}

/**
 * Settings that are valid but probably not what was meant, one line each,
 * for start-up to log as warnings. A CACHE_PREFIXES entry is taken as
 * written, as Redis takes a prefix, so `user:, session:` names the prefix
 * ` session:` (with its space), which hardly any key has: its keys would
 * never be cached, silently.
 */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = []
  for (const prefix of config.cache.prefixes) {
    if (prefix.trim() !== prefix) {
      warnings.push(
        `CACHE_PREFIXES entry ${JSON.stringify(prefix)} starts or ends with white space, taken as written: only keys starting with exactly that are cached`,
      )
    }
  }
  return warnings
}

/** The effective configuration with every secret masked: what start-up logs. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    http: { ...config.http, redisUrl: maskUrl(config.http.redisUrl) },
    tcp: { ...config.tcp, redisUrl: maskUrl(config.tcp.redisUrl) },
    cluster:
      config.cluster === undefined
        ? undefined
        : { ...config.cluster, seeds: config.cluster.seeds.map(maskUrl) },
    rest: config.rest === undefined ? undefined : { ...config.rest, token: '***' },
    sentinel:
      config.sentinel === undefined
        ? undefined
        : {
            ...config.sentinel,
            sentinels: config.sentinel.sentinels.map(({ host, port }) => `${host}:${port}`),
            password: config.sentinel.password === undefined ? undefined : '***',
          },
    // Never the users themselves: they hold password digests.
    auth: {
      requiresAuth: config.auth.users.requiresAuth(),
      configured: config.auth.configured,
      trustedNetwork: config.auth.trustedNetwork,
    },
  }
}

/** The original per-server host/port names override REDIS_URL's, keeping its scheme and credentials. */
function backingUrl(base: string, host: string | undefined, port: number | undefined): string {
  if (host === undefined && port === undefined) return base
  const parsed = new URL(base)
  if (host !== undefined) parsed.hostname = host
  if (port !== undefined) parsed.port = String(port)
  return parsed.toString()
}

/** The URL with its password replaced, for logs and status pages. */
export function maskUrl(raw: string): string {
  const parsed = new URL(raw)
  if (parsed.password !== '') parsed.password = '***'
  return parsed.toString()
}

function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const inner of Object.values(value)) {
    if (typeof inner === 'object' && inner !== null) deepFreeze(inner)
  }
  return Object.freeze(value)
}

/** The per-server host and port variables, refused where something else says where Redis is. */
function refusePerServerHosts(
  clean: {
    BACKING_REDIS_HOST_HTTP?: string | undefined
    BACKING_REDIS_PORT_HTTP?: number | undefined
    BACKING_REDIS_HOST_TCP?: string | undefined
    BACKING_REDIS_PORT_TCP?: number | undefined
  },
  env: Record<string, string | undefined>,
  why: string,
): void {
  for (const name of [
    'BACKING_REDIS_HOST_HTTP',
    'BACKING_REDIS_PORT_HTTP',
    'BACKING_REDIS_HOST_TCP',
    'BACKING_REDIS_PORT_TCP',
  ] as const) {
    if (clean[name] !== undefined) {
      throw new ConfigError(`Invalid ${name}=${JSON.stringify(env[name] ?? '')}: ${why}`)
    }
  }
}
