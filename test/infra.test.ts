import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { CONFIG_NAMES, loadConfig } from '../shared/config.js'
import { freePort } from './harness/ports.js'
import { spawnProxy, waitForHttp } from './harness/process.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'

/**
 * No container engine runs here, so these check what can be checked without
 * one: the files agree with the configuration the proxy reads, and the image's
 * own start and health-check commands work when run directly.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')

type ComposeService = {
  image?: string
  build?: { context: string; dockerfile: string }
  command?: string[]
  environment?: Record<string, string>
  ports?: string[]
  depends_on?: Record<string, { condition: string }>
  secrets?: string[]
}

/** A file reader that knows only `path`, holding a password: what a mounted secret gives. */
const secretAt = (path: string) => (asked: string) => {
  if (asked !== path) throw new Error(`ENOENT: no such file or directory, open '${asked}'`)
  return 'a-password\n'
}

/** The ignore file's lines, comments and blanks dropped. */
const ignoreLines = (path: string) =>
  read(path)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))

const INTERFACES = ['http', 'resp']

/** The interfaces a `node dist/main.js ...` command starts (none named: all). */
function interfacesOf(command: readonly string[]): string[] {
  expect(command.slice(0, 2)).toEqual(['node', 'dist/main.js'])
  const named = command.slice(2)
  for (const name of named) expect(INTERFACES).toContain(name)
  return named.length === 0 ? INTERFACES : named
}

/** Container ports published or declared, as numbers. */
function containerPorts(ports: readonly string[] = []): number[] {
  return ports.map((mapping) => Number(mapping.split(':').at(-1)))
}

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as {
    services: Record<string, ComposeService>
    secrets?: Record<string, { file?: string }>
  }
  const services = compose.services

  it('runs Redis, the HTTP function and the RESP sidecar', () => {
    expect(Object.keys(services).sort()).toEqual(['http', 'redis', 'sidecar'])
    expect(services.redis?.image).toMatch(/^redis:/)
    expect(interfacesOf(services.http?.command ?? [])).toEqual(['http'])
    expect(interfacesOf(services.sidecar?.command ?? [])).toEqual(['resp'])
  })

  it('takes the password from a file that neither git nor the image build picks up', () => {
    const file = compose.secrets?.proxy_password?.file ?? ''
    expect(file).toMatch(/^\.\//)
    const top = file.slice(2).split('/')[0] as string
    expect(ignoreLines('.gitignore')).toContain(`${top}/`)
    expect(ignoreLines('.dockerignore')).toContain(top)
    // git would say so, too.
    const checked = spawnSync('git', ['check-ignore', '-q', file.slice(2)], { cwd: ROOT })
    expect(checked.status).toBe(0)
  })

  for (const name of ['http', 'sidecar']) {
    it(`wires the ${name} service by the proxy's own variable names and ports`, () => {
      const service = services[name] as ComposeService
      expect(service.build).toEqual({ context: '.', dockerfile: 'infra/Dockerfile' })
      expect(existsSync(join(ROOT, service.build?.dockerfile ?? ''))).toBe(true)
      expect(service.depends_on?.redis?.condition).toBe('service_healthy')

      const env = service.environment ?? {}
      for (const variable of Object.keys(env)) expect(CONFIG_NAMES).toContain(variable)
      // The password comes from a compose secret, where compose mounts it.
      expect(env.PROXY_PASSWORD).toBeUndefined()
      const [secret] = service.secrets ?? []
      expect(secret).toBeDefined()
      expect(env.PROXY_PASSWORD_FILE).toBe(`/run/secrets/${secret}`)
      // Every value is one the proxy accepts, and it points at the redis service.
      const config = loadConfig(env, secretAt(`/run/secrets/${secret}`))
      expect(config.auth.users.requiresAuth()).toBe(true)
      const backend = new URL(name === 'http' ? config.http.redisUrl : config.tcp.redisUrl)
      expect(Object.keys(services)).toContain(backend.hostname)
      expect(backend.port === '' ? 6379 : Number(backend.port)).toBe(6379)

      const published = containerPorts(service.ports)
      const interfaces = interfacesOf(service.command ?? [])
      if (interfaces.includes('http')) {
        expect(config.http.host).toBe('0.0.0.0')
        expect(published).toContain(config.http.port)
      }
      if (interfaces.includes('resp')) {
        expect(config.tcp.host).toBe('0.0.0.0')
        expect(published).toContain(config.tcp.port)
        // The sidecar alone serves no HTTP: its metrics and probes need METRICS_PORT.
        if (!interfaces.includes('http')) {
          expect(config.metrics.port).toBeDefined()
          expect(config.metrics.host).toBe('0.0.0.0')
          expect(published).toContain(config.metrics.port)
        }
      }
    })
  }
})

type Instruction = { op: string; args: string }

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(path: string): Instruction[] {
  const joined = read(path).replace(/\\\n/g, ' ')
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const space = line.indexOf(' ')
      return { op: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() }
    })
}

/** The JSON (exec) form of CMD / HEALTHCHECK CMD: no shell in between. */
function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['))
  const parsed = JSON.parse(json) as unknown
  expect(Array.isArray(parsed)).toBe(true)
  return parsed as string[]
}

describe('infra/Dockerfile', () => {
  const instructions = dockerfile('infra/Dockerfile')
  const stages = instructions.filter((i) => i.op === 'FROM')
  const final = instructions.slice(instructions.lastIndexOf(stages.at(-1) as Instruction))

  it('builds in one stage and runs, as a non-root user, from another', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of stages) expect(stage.args).toMatch(/^node:20[.-]/)
    const user = final.filter((i) => i.op === 'USER').at(-1)
    expect(user?.args).toBeDefined()
    expect(['root', '0']).not.toContain(user?.args.split(':')[0])
    expect(final.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args))).toBe(false)
  })

  it('copies only what exists in the repository, and the build output into the final image', () => {
    for (const copy of instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
      const parts = copy.args.split(/\s+/).filter((part) => !part.startsWith('--'))
      for (const source of parts.slice(0, -1)) expect(existsSync(join(ROOT, source))).toBe(true)
    }
    const fromBuild = final.filter((i) => i.op === 'COPY' && i.args.includes('--from'))
    expect(fromBuild.map((i) => i.args).join(' ')).toMatch(/dist/)
    const ignored = read('.dockerignore').split('\n')
    expect(ignored).toContain('node_modules')
    expect(ignored).toContain('dist')
  })

  describe('its start and health-check commands, run directly', () => {
    let redis: TestRedis
    beforeAll(async () => {
      redis = await startRedis()
    })
    afterAll(async () => redis?.stop())

    const healthcheck = (env: Record<string, string>) => {
      const line = final.find((i) => i.op === 'HEALTHCHECK')
      const command = execForm(line?.args ?? '')
      const result = spawnSync(command[0] as string, command.slice(1), {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', ...env },
        timeout: 10_000,
      })
      return result.status
    }

    for (const [label, extra] of [
      ['both interfaces', []],
      ['the sidecar alone, with METRICS_PORT', ['resp']],
    ] as const) {
      it(`serves and reports healthy: ${label}`, async () => {
        const cmd = execForm(final.find((i) => i.op === 'CMD')?.args ?? '')
        expect(cmd).toEqual(['node', 'dist/main.js'])
        const http = await freePort()
        const metrics = await freePort()
        const env: Record<string, string> = {
          REDIS_URL: redis.url,
          PROXY_HOST_HTTP: '127.0.0.1',
          PROXY_PORT_HTTP: String(http),
          PROXY_HOST_TCP: '127.0.0.1',
          PROXY_PORT_TCP: String(await freePort()),
        }
        if (extra.length > 0) {
          env.METRICS_HOST = '127.0.0.1'
          env.METRICS_PORT = String(metrics)
          // As deployed: with a password, which the probes must not need.
          env.PROXY_PASSWORD = 'probe-pw'
        }
        const proxy = spawnProxy([...cmd.slice(2), ...extra], env)
        const probed = extra.length > 0 ? metrics : http
        await waitForHttp(`http://127.0.0.1:${probed}/healthz`)
        expect(healthcheck(env)).toBe(0)
        if (extra.length > 0) {
          const url = `http://127.0.0.1:${metrics}`
          // Ready once the backend and the invalidation channel are both up.
          const deadline = Date.now() + 10_000
          let ready = await fetch(`${url}/readyz`)
          while (ready.status !== 200 && Date.now() < deadline) {
            await sleep(25)
            ready = await fetch(`${url}/readyz`)
          }
          expect(await ready.json()).toEqual({
            ready: true,
            checks: { backend: true, invalidation: true },
          })
          expect((await fetch(`${url}/metrics`)).status).toBe(401)
          const scraped = await fetch(`${url}/metrics`, {
            headers: { authorization: 'Bearer probe-pw' },
          })
          const text = await scraped.text()
          expect(text).toContain('redis_proxy_connections{interface="resp"} 0')
          expect(text).toContain('redis_proxy_cache_hits_total{interface="resp"} 0')
        }
        proxy.child.kill('SIGTERM')
        expect(await proxy.exited()).toEqual({ code: 0, signal: null })
        expect(healthcheck(env)).toBe(1)
      })
    }
  })
})

type K8sObject = {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
  spec: any
}

describe('infra/k8s', () => {
  const documents = parseAllDocuments(read('infra/k8s/redis-proxy.yaml'))
  const objects = documents.map((doc) => doc.toJS() as K8sObject)
  const byKind = (kind: string) => objects.find((o) => o.kind === kind) as K8sObject

  it('has a Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget that select the same pods', () => {
    expect(documents.flatMap((doc) => doc.errors)).toEqual([])
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'Service',
    ])
    const deployment = byKind('Deployment')
    const podLabels = deployment.spec.template.metadata.labels
    expect(deployment.spec.selector.matchLabels).toEqual(podLabels)
    expect(byKind('Service').spec.selector).toEqual(podLabels)
    expect(byKind('PodDisruptionBudget').spec.selector.matchLabels).toEqual(podLabels)
    expect(byKind('HorizontalPodAutoscaler').spec.scaleTargetRef).toMatchObject({
      kind: 'Deployment',
      name: deployment.metadata.name,
    })
  })

  it('probes /healthz for liveness and /readyz for readiness on the port the proxy listens on', () => {
    const deployment = byKind('Deployment')
    const [container] = deployment.spec.template.spec.containers
    const env: Record<string, string> = {}
    for (const entry of container.env as { name: string; value?: string }[]) {
      expect(CONFIG_NAMES).toContain(entry.name)
      if (entry.value !== undefined) env[entry.name] = entry.value
    }
    const config = loadConfig(env, secretAt(env.PROXY_PASSWORD_FILE ?? ''))
    const ports = new Map<string, number>(
      (container.ports as { name: string; containerPort: number }[]).map((p) => [
        p.name,
        p.containerPort,
      ]),
    )
    expect(ports.get('http')).toBe(config.http.port)
    expect(ports.get('resp')).toBe(config.tcp.port)
    // No credentials in the probes: both paths stay open (README, Security).
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    interfacesOf(container.command)
    expect(deployment.spec.template.spec.securityContext.runAsNonRoot).toBe(true)
    // The kubelet must not SIGKILL a pod that is still draining.
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      config.shutdownTimeoutMs,
    )
  })

  it('reads the password from the Secret, mounted as a file, and so listens beyond loopback', () => {
    const deployment = byKind('Deployment')
    const pod = deployment.spec.template.spec
    const [container] = pod.containers
    const entries = container.env as { name: string; value?: string; valueFrom?: unknown }[]
    expect(entries.map((e) => e.name)).not.toContain('PROXY_PASSWORD')
    const path = entries.find((e) => e.name === 'PROXY_PASSWORD_FILE')?.value ?? ''
    const mount = (container.volumeMounts as { name: string; mountPath: string }[]).find((m) =>
      path.startsWith(`${m.mountPath}/`),
    )
    expect(mount).toBeDefined()
    const volume = (pod.volumes as { name: string; secret?: Record<string, unknown> }[]).find(
      (v) => v.name === mount?.name,
    )
    // The Secret the header comment creates, its proxy-password key at that path.
    expect(volume?.secret?.secretName).toBe('redis-proxy')
    expect(volume?.secret?.items).toContainEqual({
      key: 'proxy-password',
      path: path.slice((mount?.mountPath.length ?? 0) + 1),
    })
    expect(read('infra/k8s/redis-proxy.yaml')).toContain('--from-literal=proxy-password=')

    const env: Record<string, string> = {}
    for (const entry of entries) if (entry.value !== undefined) env[entry.name] = entry.value
    const config = loadConfig(env, secretAt(path))
    expect(config.auth.users.requiresAuth()).toBe(true)
    // Unset in the manifest: with a password the defaults reach the pod network.
    expect(config.http.host).toBe('0.0.0.0')
    expect(config.tcp.host).toBe('0.0.0.0')
  })
})
