import { describe, expect, it } from 'vitest'
import {
  ConfigError,
  configWarnings,
  describeConfig,
  loadConfig,
  MAX_TIMER_MS,
  MAX_WORKERS,
  maskUrl,
} from './config.js'

/** The message of the ConfigError `load` throws. */
function configError(load: () => unknown): string {
  try {
    load()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message
  }
  throw new Error('expected a ConfigError')
}

const files =
  (contents: Record<string, string>) =>
  (path: string): string => {
    const text = contents[path]
    if (text === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`)
    return text
  }

const LOOPBACK_ONLY =
  'no password is set, so only loopback is allowed; set PROXY_PASSWORD (or PROXY_PASSWORD_FILE, PROXY_ACL_FILE), or PROXY_TRUSTED_NETWORK=true if everyone who can reach it may read every key'

describe('loadConfig', () => {
  it('has production defaults for every variable', () => {
    const { auth, ...config } = loadConfig({})
    expect(config).toEqual({
      http: {
        host: '127.0.0.1',
        port: 5000,
        redisUrl: 'redis://127.0.0.1:6379',
        headersTimeoutMs: 10_000,
        requestTimeoutMs: 30_000,
        keepAliveTimeoutMs: 5000,
      },
      tcp: {
        host: '127.0.0.1',
        port: 4000,
        redisUrl: 'redis://127.0.0.1:6379',
        idleTimeoutMs: 0,
        handshakeTimeoutMs: 10_000,
      },
      cache: {
        capacity: 100_000,
        ttlMs: 60_000,
        invalidation: 'on',
        tracking: 'bcast',
        prefixes: [],
      },
      maxClients: 10_000,
      maxBackendConnections: 1000,
      maxParallel: 4096,
      maxQueue: 10_000,
      redis: {
        commandTimeoutMs: 1000,
        connectTimeoutMs: 2000,
        livenessTimeoutMs: 5000,
      },
      shutdownTimeoutMs: 10_000,
      idleGcIntervalMs: 5000,
      logLevel: 'info',
      metrics: { host: '127.0.0.1', port: undefined },
      tls: { listener: undefined, backend: {} },
      workers: 1,
    })
    expect(auth.configured).toBe(false)
    expect(auth.trustedNetwork).toBe(false)
    expect(auth.users.requiresAuth()).toBe(false)
    expect(Object.isFrozen(loadConfig({}))).toBe(true)
    expect(Object.isFrozen(config.cache)).toBe(true)
    expect(Object.isFrozen(auth)).toBe(true)
  })

  it('listens on every address by default once a password or an ACL is configured', () => {
    for (const env of [
      { PROXY_PASSWORD: 'pw' },
      { PROXY_PASSWORD_FILE: '/run/secrets/pw' },
      { PROXY_ACL_FILE: '/etc/users.acl' },
      { PROXY_ACL: 'user alice on >a ~cache:* +get' },
    ]) {
      const config = loadConfig(
        env,
        files({ '/run/secrets/pw': 'pw\n', '/etc/users.acl': 'user alice on >a ~*\n' }),
      )
      expect([config.http.host, config.tcp.host, config.metrics.host], JSON.stringify(env)).toEqual(
        ['0.0.0.0', '0.0.0.0', '0.0.0.0'],
      )
      expect(config.auth.configured).toBe(true)
    }
    const config = loadConfig({ PROXY_PASSWORD: 'pw' })
    expect(config.auth.users.requiresAuth()).toBe(true)
    expect(config.auth.users.authenticate('default', 'pw')).toBe(config.auth.users.defaultUser())
    expect(loadConfig({ PROXY_PASSWORD: 'pw', PROXY_HOST_HTTP: '10.0.0.5' }).http.host).toBe(
      '10.0.0.5',
    )
  })

  it.each(['PROXY_HOST_HTTP', 'PROXY_HOST_TCP', 'METRICS_HOST'])(
    'refuses a non-loopback %s without credentials, in one line saying how to set a password',
    (name) => {
      for (const address of ['0.0.0.0', '::', '10.0.0.5', 'proxy.internal']) {
        expect(configError(() => loadConfig({ [name]: address }))).toBe(
          `Invalid ${name}=${JSON.stringify(address)}: ${LOOPBACK_ONLY}`,
        )
      }
      for (const address of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) {
        expect(() => loadConfig({ [name]: address })).not.toThrow()
      }
      // An empty password counts as unset, as everywhere else.
      expect(configError(() => loadConfig({ [name]: '0.0.0.0', PROXY_PASSWORD: '' }))).toContain(
        LOOPBACK_ONLY,
      )
    },
  )

  it('listens beyond loopback without credentials only with PROXY_TRUSTED_NETWORK=true', () => {
    const config = loadConfig({ PROXY_HOST_HTTP: '0.0.0.0', PROXY_TRUSTED_NETWORK: 'true' })
    expect(config.http.host).toBe('0.0.0.0')
    expect(config.auth.trustedNetwork).toBe(true)
    // The opt-in widens nothing by itself: unset addresses stay on loopback.
    expect(config.tcp.host).toBe('127.0.0.1')
    expect(
      configError(() => loadConfig({ PROXY_HOST_HTTP: '0.0.0.0', PROXY_TRUSTED_NETWORK: 'false' })),
    ).toContain(LOOPBACK_ONLY)
    expect(configError(() => loadConfig({ PROXY_TRUSTED_NETWORK: 'yes' }))).toBe(
      'Invalid PROXY_TRUSTED_NETWORK="yes": expected true or false',
    )
  })

  it('reads no file without a reader: the Worker has no filesystem', () => {
    expect(configError(() => loadConfig({ PROXY_ACL_FILE: '/etc/users.acl' }))).toBe(
      'Invalid PROXY_ACL_FILE="/etc/users.acl": this runtime has no filesystem',
    )
    expect(configError(() => loadConfig({ PROXY_PASSWORD_FILE: '/run/secrets/pw' }))).toBe(
      'Invalid PROXY_PASSWORD_FILE="/run/secrets/pw": this runtime has no filesystem',
    )
  })

  it('takes a TLS certificate only with its key, a client CA only with both, backend TLS only with rediss://', () => {
    expect(() => loadConfig({ PROXY_TLS_CERT_FILE: '/c.pem' })).toThrow(
      'Invalid PROXY_TLS_KEY_FILE="": required when PROXY_TLS_CERT_FILE is set',
    )
    expect(() => loadConfig({ PROXY_TLS_KEY_FILE: '/k.pem' })).toThrow(
      'Invalid PROXY_TLS_CERT_FILE="": required when PROXY_TLS_KEY_FILE is set',
    )
    expect(() => loadConfig({ PROXY_TLS_CA_FILE: '/ca.pem' })).toThrow(
      'Invalid PROXY_TLS_CERT_FILE="": required when PROXY_TLS_CA_FILE is set',
    )
    expect(() =>
      loadConfig({ REDIS_TLS_CERT_FILE: '/c.pem', REDIS_TLS_KEY_FILE: '/k.pem' }),
    ).toThrow('Invalid REDIS_TLS_CERT_FILE="/c.pem": needs a rediss:// REDIS_URL')
    const config = loadConfig({
      REDIS_URL: 'rediss://localhost:6380',
      PROXY_TLS_CERT_FILE: '/c.pem',
      PROXY_TLS_KEY_FILE: '/k.pem',
      REDIS_TLS_CA_FILE: '/ca.pem',
      REDIS_TLS_SERVERNAME: 'redis.internal',
    })
    expect(config.tls).toEqual({
      listener: { certFile: '/c.pem', keyFile: '/k.pem', caFile: undefined },
      backend: { caFile: '/ca.pem', servername: 'redis.internal' },
    })
  })

  it('lets the original host/port names pick each server backend, keeping REDIS_URL credentials', () => {
    const config = loadConfig({
      REDIS_URL: 'rediss://user:secret@redis.example:6380/2',
      BACKING_REDIS_HOST_HTTP: 'http-redis',
      BACKING_REDIS_PORT_TCP: '7000',
    })
    expect(config.http.redisUrl).toBe('rediss://user:secret@http-redis:6380/2')
    expect(config.tcp.redisUrl).toBe('rediss://user:secret@redis.example:7000/2')
  })

  it.each([
    ['CACHE_CAPACITY', '0'],
    ['CACHE_CAPACITY', '-1'],
    ['CACHE_CAPACITY', 'abc'],
    ['CACHE_CAPACITY', '1.5'],
    ['CACHE_CAPACITY', ''],
    ['CACHE_GLOBAL_EXPIRY', '0'],
    ['PROXY_PORT_HTTP', '70000'],
    ['PROXY_PORT_TCP', '0'],
    ['MAX_CLIENTS', 'many'],
    ['MAX_PARALLEL', '0'],
    ['REDIS_URL', 'http://localhost'],
    ['REDIS_URL', 'not a url'],
    ['LOG_LEVEL', 'loud'],
    ['CACHE_INVALIDATION', 'yes'],
    ['CACHE_INVALIDATION', ''],
    ['CACHE_TRACKING', 'BCAST'],
    ['CACHE_TRACKING', 'default'],
    ['CACHE_PREFIXES', 'a,,b'],
    ['CACHE_PREFIXES', 'a,'],
    ['CACHE_PREFIXES', 'user:,user:1'],
    ['CACHE_PREFIXES', 'k,k'],
    ['PROXY_HOST_HTTP', ' '],
    ['REDIS_LIVENESS_TIMEOUT', '0'],
    ['REDIS_LIVENESS_TIMEOUT', '2147483648'],
    ['REDIS_LIVENESS_TIMEOUT', '999'],
    ['HTTP_HEADERS_TIMEOUT', '2147483648'],
    ['HTTP_REQUEST_TIMEOUT', '-1'],
    ['HTTP_KEEPALIVE_TIMEOUT', '5s'],
    ['RESP_HANDSHAKE_TIMEOUT', '99999999999'],
  ])('stops on %s=%j with one line naming the variable and the value', (name, value) => {
    let error: unknown
    try {
      loadConfig({ [name]: value })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    expect(message).toContain(`${name}=${JSON.stringify(value)}`)
    expect(message).not.toContain('\n')
  })

  it('reads the Upstash REST URL and token as one backend, without a trailing slash', () => {
    const config = loadConfig({
      UPSTASH_REDIS_REST_URL: 'https://eu1-example.upstash.io/',
      UPSTASH_REDIS_REST_TOKEN: 'tok',
    })
    expect(config.rest).toEqual({ url: 'https://eu1-example.upstash.io', token: 'tok' })
    expect(Object.isFrozen(config.rest)).toBe(true)
    expect(loadConfig({}).rest).toBeUndefined()
  })

  it('accepts plain http for the REST URL only on loopback', () => {
    const local = loadConfig({
      UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:8079',
      UPSTASH_REDIS_REST_TOKEN: 'tok',
    })
    expect(local.rest?.url).toBe('http://127.0.0.1:8079')
    expect(() =>
      loadConfig({
        UPSTASH_REDIS_REST_URL: 'http://redis.example',
        UPSTASH_REDIS_REST_TOKEN: 'tok',
      }),
    ).toThrow('Invalid UPSTASH_REDIS_REST_URL="http://redis.example"')
  })

  it.each([
    [{ UPSTASH_REDIS_REST_URL: 'https://r.example' }, 'UPSTASH_REDIS_REST_TOKEN'],
    [{ UPSTASH_REDIS_REST_TOKEN: 'tok' }, 'UPSTASH_REDIS_REST_URL'],
    [{ UPSTASH_REDIS_REST_URL: 'redis://r.example', UPSTASH_REDIS_REST_TOKEN: 't' }, 'URL'],
    [{ UPSTASH_REDIS_REST_URL: 'https://r.example/?a=1', UPSTASH_REDIS_REST_TOKEN: 't' }, 'URL'],
    [{ UPSTASH_REDIS_REST_URL: 'https://r.example', UPSTASH_REDIS_REST_TOKEN: ' ' }, 'TOKEN'],
  ])('refuses an incomplete or bad REST backend %j', (env, named) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(named)
  })

  it.each([
    'redis://h:6379/abc',
    'redis://h:6379/-1',
    'redis://h:6379/1.5',
    'redis://h:6379/01',
    'redis://h:6379/1/2',
    'redis://h:6379/99999999999',
    'redis://h:6379/0?db=2',
  ])('refuses a REDIS_URL whose path is not a database number: %s', (url) => {
    expect(() => loadConfig({ REDIS_URL: url })).toThrow(
      `Invalid REDIS_URL=${JSON.stringify(url)}: expected a database number as the path`,
    )
  })

  it.each([
    'redis://h:6379',
    'redis://h:6379/',
    'redis://h:6379/0',
    'redis://h:6379/15',
    'redis://h/31',
  ])('takes a database number in REDIS_URL: %s', (url) => {
    expect(loadConfig({ REDIS_URL: url }).tcp.redisUrl).toBe(url)
  })

  it.each([
    'REDIS_COMMAND_TIMEOUT',
    'REDIS_CONNECT_TIMEOUT',
    'IDLE_TIMEOUT',
    'SHUTDOWN_TIMEOUT',
    'IDLE_GC_INTERVAL',
  ])('refuses a %s that Node timers would overflow', (name) => {
    expect(() => loadConfig({ [name]: String(MAX_TIMER_MS) })).not.toThrow()
    expect(() => loadConfig({ [name]: String(MAX_TIMER_MS + 1) })).toThrow(
      `Invalid ${name}="2147483648": expected an integer from`,
    )
  })

  it('takes IDLE_GC_INTERVAL in ms, 0 turning the idle collection off', () => {
    expect(loadConfig({ IDLE_GC_INTERVAL: '0' }).idleGcIntervalMs).toBe(0)
    expect(loadConfig({ IDLE_GC_INTERVAL: '60000' }).idleGcIntervalMs).toBe(60_000)
    expect(() => loadConfig({ IDLE_GC_INTERVAL: '-1' })).toThrow('Invalid IDLE_GC_INTERVAL="-1"')
  })

  it('takes WORKERS as a count of processes from 1, or auto for one per core', () => {
    expect(loadConfig({ WORKERS: '1' }).workers).toBe(1)
    expect(loadConfig({ WORKERS: '4' }).workers).toBe(4)
    expect(loadConfig({ WORKERS: ' 2 ' }).workers).toBe(2)
    expect(loadConfig({ WORKERS: 'auto' }).workers).toBe('auto')
    expect(loadConfig({ WORKERS: String(MAX_WORKERS) }).workers).toBe(MAX_WORKERS)
    for (const bad of ['0', '-1', '1.5', 'two', 'AUTO', '', String(MAX_WORKERS + 1)]) {
      expect(
        configError(() => loadConfig({ WORKERS: bad })),
        bad,
      ).toBe(
        `Invalid WORKERS=${JSON.stringify(bad)}: expected an integer from 1 to ${MAX_WORKERS}, or auto`,
      )
    }
  })

  it('keeps the liveness window at least the command timeout', () => {
    expect(loadConfig({ REDIS_LIVENESS_TIMEOUT: '2147483647' }).redis.livenessTimeoutMs).toBe(
      2_147_483_647,
    )
    expect(
      loadConfig({ REDIS_COMMAND_TIMEOUT: '200', REDIS_LIVENESS_TIMEOUT: '200' }).redis
        .livenessTimeoutMs,
    ).toBe(200)
    // Unset, it follows a command timeout raised above its default.
    expect(loadConfig({ REDIS_COMMAND_TIMEOUT: '8000' }).redis.livenessTimeoutMs).toBe(8000)
    expect(() =>
      loadConfig({ REDIS_COMMAND_TIMEOUT: '3000', REDIS_LIVENESS_TIMEOUT: '2000' }),
    ).toThrow(
      'Invalid REDIS_LIVENESS_TIMEOUT="2000": expected at least REDIS_COMMAND_TIMEOUT (3000)',
    )
  })

  it('takes connection timeouts up to the largest a Node timer holds, 0 for never', () => {
    const config = loadConfig({
      HTTP_HEADERS_TIMEOUT: '0',
      HTTP_REQUEST_TIMEOUT: '2147483647',
      HTTP_KEEPALIVE_TIMEOUT: '0',
      RESP_HANDSHAKE_TIMEOUT: '500',
    })
    expect(config.http).toMatchObject({
      headersTimeoutMs: 0,
      requestTimeoutMs: 2_147_483_647,
      keepAliveTimeoutMs: 0,
    })
    expect(config.tcp.handshakeTimeoutMs).toBe(500)
  })

  it('refuses a headers timeout longer than the request timeout, as node:http would', () => {
    expect(() =>
      loadConfig({ HTTP_HEADERS_TIMEOUT: '20000', HTTP_REQUEST_TIMEOUT: '10000' }),
    ).toThrow('Invalid HTTP_HEADERS_TIMEOUT="20000": expected at most HTTP_REQUEST_TIMEOUT (10000)')
    expect(
      loadConfig({ HTTP_HEADERS_TIMEOUT: '20000', HTTP_REQUEST_TIMEOUT: '0' }).http,
    ).toMatchObject({ headersTimeoutMs: 20_000, requestTimeoutMs: 0 })
  })

  it('puts a Redis Cluster behind the proxy with REDIS_CLUSTER_NODES, every seed with REDIS_URL credentials', () => {
    expect(loadConfig({}).cluster).toBeUndefined()
    const config = loadConfig({
      REDIS_URL: 'rediss://app:s3cret@ignored:6379',
      REDIS_CLUSTER_NODES: ' 10.0.0.1:7000,redis-1.example:7001 ,[::1]:7002',
    })
    expect(config.cluster).toEqual({
      seeds: [
        'rediss://app:s3cret@10.0.0.1:7000',
        'rediss://app:s3cret@redis-1.example:7001',
        'rediss://app:s3cret@[::1]:7002',
      ],
      refreshMs: 5000,
    })
    expect(
      loadConfig({ REDIS_CLUSTER_NODES: 'h:1', REDIS_CLUSTER_REFRESH: '250' }).cluster?.refreshMs,
    ).toBe(250)
    expect(JSON.stringify(describeConfig(config))).not.toContain('s3cret')
  })

  it('refuses a cluster node list that is not host:port, naming the bad entry', () => {
    expect(configError(() => loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000,10.0.0.2' }))).toBe(
      'Invalid REDIS_CLUSTER_NODES="10.0.0.1:7000,10.0.0.2": expected host:port[,host:port...], got `10.0.0.2`',
    )
    expect(configError(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:99999' }))).toBe(
      'Invalid REDIS_CLUSTER_NODES="h:99999": expected host:port[,host:port...], got `h:99999`',
    )
    expect(configError(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:1,,h:2' }))).toBe(
      'Invalid REDIS_CLUSTER_NODES="h:1,,h:2": expected host:port[,host:port...], got ``',
    )
    expect(configError(() => loadConfig({ REDIS_CLUSTER_NODES: ':7000' }))).toBe(
      'Invalid REDIS_CLUSTER_NODES=":7000": expected host:port[,host:port...], got `:7000`',
    )
    expect(
      configError(() => loadConfig({ REDIS_CLUSTER_NODES: 'h:1', REDIS_CLUSTER_REFRESH: '10' })),
    ).toBe('Invalid REDIS_CLUSTER_REFRESH="10": expected an integer from 100 to 2147483647')
  })

  it('refuses a database or a per-server backend beside a cluster', () => {
    expect(
      configError(() => loadConfig({ REDIS_URL: 'redis://h:6379/2', REDIS_CLUSTER_NODES: 'h:1' })),
    ).toBe(
      'Invalid REDIS_URL="redis://h:6379/2": a Redis Cluster has only database 0 (REDIS_CLUSTER_NODES is set)',
    )
    expect(
      configError(() => loadConfig({ BACKING_REDIS_PORT_TCP: '7000', REDIS_CLUSTER_NODES: 'h:1' })),
    ).toBe(
      'Invalid BACKING_REDIS_PORT_TCP="7000": not taken with REDIS_CLUSTER_NODES (every interface reads the cluster)',
    )
  })

  it('turns invalidation off only when asked', () => {
    expect(loadConfig({ CACHE_INVALIDATION: 'off' }).cache.invalidation).toBe('off')
    expect(loadConfig({ CACHE_INVALIDATION: 'on' }).cache.invalidation).toBe('on')
  })

  it('caches every key unless CACHE_PREFIXES names some, taken as written', () => {
    expect(loadConfig({}).cache.prefixes).toEqual([])
    expect(loadConfig({ CACHE_PREFIXES: '' }).cache.prefixes).toEqual([])
    expect(loadConfig({ CACHE_PREFIXES: 'user:, page:,é' }).cache.prefixes).toEqual([
      'user:',
      ' page:',
      'é',
    ])
  })

  it('warns of a CACHE_PREFIXES entry with white space at either end, and of nothing else', () => {
    expect(configWarnings(loadConfig({ CACHE_PREFIXES: 'user:, page:,tab:\t,é' }))).toEqual([
      expect.stringContaining('CACHE_PREFIXES entry " page:" starts or ends with white space'),
      expect.stringContaining('CACHE_PREFIXES entry "tab:\\t"'),
    ])
    expect(configWarnings(loadConfig({ CACHE_PREFIXES: 'user:,page:' }))).toEqual([])
    expect(configWarnings(loadConfig({}))).toEqual([])
  })

  it('says which CACHE_PREFIXES overlap, as Redis would refuse them', () => {
    expect(() => loadConfig({ CACHE_PREFIXES: 'user:,user:1' })).toThrow(
      /CACHE_PREFIXES.*'user:1' overlaps 'user:'/,
    )
  })

  it('tracks by broadcast unless asked to track the keys read', () => {
    expect(loadConfig({}).cache.tracking).toBe('bcast')
    expect(loadConfig({ CACHE_TRACKING: 'keys' }).cache.tracking).toBe('keys')
  })

  it('turns on the metrics listener with METRICS_PORT', () => {
    const config = loadConfig({ METRICS_PORT: '9464', METRICS_HOST: '127.0.0.2' })
    expect(config.metrics).toEqual({ host: '127.0.0.2', port: 9464 })
    expect(() => loadConfig({ METRICS_PORT: '0' })).toThrow(
      'Invalid METRICS_PORT="0": expected an integer from 1 to 65535',
    )
  })

  it('describes the effective configuration without any password', () => {
    const config = loadConfig({
      REDIS_URL: 'redis://app:s3cret@redis.example:6379/1',
      UPSTASH_REDIS_REST_URL: 'https://r.example',
      UPSTASH_REDIS_REST_TOKEN: 'rest-s3cret',
      PROXY_ACL: 'user alice on >alice-s3cret ~*',
    })
    const described = JSON.stringify(describeConfig(config))
    expect(described).not.toContain('s3cret')
    expect(describeConfig(config).auth).toEqual({
      requiresAuth: false,
      configured: true,
      trustedNetwork: false,
    })
    expect(described).toContain('"rest":{"url":"https://r.example","token":"***"}')
    expect(described).toContain('redis://app:***@redis.example:6379/1')
    expect(describeConfig(config)).toMatchObject({ cache: config.cache, logLevel: 'info' })
  })

  it('masks the password in URLs meant for logs', () => {
    expect(maskUrl('redis://user:secret@host:6379')).toBe('redis://user:***@host:6379')
    expect(maskUrl('redis://host:6379')).toBe('redis://host:6379')
  })
})

describe('Sentinel configuration', () => {
  it('reads the sentinels in order, on port 26379 unless one is named, with the master name', () => {
    const config = loadConfig({
      REDIS_URL: 'redis://app:pw@ignored:1/2',
      REDIS_SENTINELS: 'sentinel-1:26380, 10.0.0.2,[::1]:26381',
      REDIS_SENTINEL_MASTER: 'mymaster',
    })
    expect(config.sentinel).toEqual({
      sentinels: [
        { host: 'sentinel-1', port: 26380 },
        { host: '10.0.0.2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
      masterName: 'mymaster',
      username: undefined,
      password: undefined,
    })
    expect(Object.isFrozen(config.sentinel?.sentinels[0])).toBe(true)
    // The data nodes' credentials and database stay REDIS_URL's.
    expect(config.tcp.redisUrl).toBe('redis://app:pw@ignored:1/2')
    expect(loadConfig({}).sentinel).toBeUndefined()
  })

  it("takes the sentinels' own credentials apart from the data nodes' and masks them in logs", () => {
    const config = loadConfig({
      REDIS_SENTINELS: 's1:26379',
      REDIS_SENTINEL_MASTER: 'm',
      REDIS_SENTINEL_USERNAME: 'watcher',
      REDIS_SENTINEL_PASSWORD: ' sp ace ',
    })
    expect(config.sentinel?.username).toBe('watcher')
    expect(config.sentinel?.password).toBe(' sp ace ')
    const described = describeConfig(config)
    expect(JSON.stringify(described)).not.toContain('sp ace')
    expect(described.sentinel).toEqual({
      sentinels: ['s1:26379'],
      masterName: 'm',
      username: 'watcher',
      password: '***',
    })
  })

  it.each([
    '',
    ' ',
    's1:26379,',
    's1:0',
    's1:65536',
    's1:port',
    '::1:26379',
    's1:26379,s1:26379',
    'redis://s1:26379',
  ])('stops on REDIS_SENTINELS=%j naming the variable and the value', (value) => {
    const message = configError(() =>
      loadConfig({ REDIS_SENTINELS: value, REDIS_SENTINEL_MASTER: 'm' }),
    )
    expect(message).toContain(`Invalid REDIS_SENTINELS=${JSON.stringify(value)}`)
    expect(message).not.toContain('\n')
  })

  it.each([
    [{ REDIS_SENTINELS: 's1' }, 'Invalid REDIS_SENTINEL_MASTER="": required when REDIS_SENTINELS'],
    [
      { REDIS_SENTINELS: 's1', REDIS_SENTINEL_MASTER: 'my master' },
      'REDIS_SENTINEL_MASTER="my master"',
    ],
    [{ REDIS_SENTINEL_MASTER: 'm' }, 'Invalid REDIS_SENTINEL_MASTER="m": needs REDIS_SENTINELS'],
    [
      { REDIS_SENTINEL_PASSWORD: 'pw' },
      'Invalid REDIS_SENTINEL_PASSWORD="***": needs REDIS_SENTINELS',
    ],
    [
      { REDIS_SENTINELS: 's1', REDIS_SENTINEL_MASTER: 'm', REDIS_SENTINEL_USERNAME: 'u' },
      'Invalid REDIS_SENTINEL_PASSWORD="": required when REDIS_SENTINEL_USERNAME',
    ],
    [
      { REDIS_SENTINELS: 's1', REDIS_SENTINEL_MASTER: 'm', BACKING_REDIS_HOST_TCP: 'r1' },
      'Invalid BACKING_REDIS_HOST_TCP="r1": the sentinels (REDIS_SENTINELS) say where the primary is',
    ],
    [
      { REDIS_SENTINELS: 's1', REDIS_SENTINEL_MASTER: 'm', BACKING_REDIS_PORT_HTTP: '7000' },
      'Invalid BACKING_REDIS_PORT_HTTP="7000"',
    ],
  ])('refuses the inconsistent Sentinel settings %j', (env, expected) => {
    const message = configError(() => loadConfig(env))
    expect(message).toContain(expected)
    expect(message).not.toContain('pw')
  })

  it('refuses Sentinel and a cluster together', () => {
    expect(() =>
      loadConfig({
        REDIS_SENTINELS: '127.0.0.1:26379',
        REDIS_SENTINEL_MASTER: 'mymaster',
        REDIS_CLUSTER_NODES: '127.0.0.1:7000',
      }),
    ).toThrow(/REDIS_SENTINELS=.*not taken with REDIS_CLUSTER_NODES/)
  })
})
