import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { slotOfKey } from '../shared/redis/cluster/slot.js'
import { askUntil } from './harness/ask-until.js'
import { type GateRelay, startGateRelay } from './harness/gate-relay.js'
import { startRespProxy, waitReady } from './harness/proxy.js'
import { startRedisCluster, type TestCluster } from './harness/redis-cluster.js'
import { sleep } from './harness/redis-server.js'

/**
 * A read that waited for the topology: its slot had no owner when it came,
 * so it went out once one was known, by the promise path, on no one node's
 * stream in order with that node's invalidations (LoadsInFlight's
 * ELSEWHERE). A cluster of its own (3 primaries, no replicas), since its
 * slots and a node's announced port are changed here.
 */

let cluster: TestCluster
/** The primary the test's key belongs to, reached by the proxy through `gate`. */
let owner: number
let gate: GateRelay

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3, replicas: 0 })
  owner = await cluster.ownerOf(slotOfKey(KEY))
  gate = await startGateRelay(owner)
  for (const node of cluster.nodes) {
    // Serving the slots it has while one has no owner.
    expect(
      await cluster.command(node.port, 'CONFIG', 'SET', 'cluster-require-full-coverage', 'no'),
    ).toBe('OK')
  }
  // Every node tells clients to reach the owner through the gate.
  expect(
    await cluster.command(owner, 'CONFIG', 'SET', 'cluster-announce-port', String(gate.port)),
  ).toBe('OK')
  for (const node of cluster.nodes) {
    await askUntil(
      async () => JSON.stringify(await slotsOf(node.port)),
      (slots) => slots.includes(`${gate.port}`),
      10_000,
    )
  }
}, 60_000)

afterAll(async () => {
  await gate?.close()
  await cluster?.stop()
})

const KEY = '{topology-wait}k'

async function slotsOf(port: number): Promise<unknown> {
  return cluster.command(port, 'CLUSTER', 'SLOTS')
}

/** Whether the node on `port` names an owner for `slot` in CLUSTER SLOTS. */
async function owned(port: number, slot: number): Promise<boolean> {
  const ranges = (await slotsOf(port)) as [number, number, ...unknown[]][]
  return ranges.some(([from, to]) => from <= slot && slot <= to)
}

describe('a read that waited for the topology', () => {
  test('is answered, and not stored when a write is heard with its reply', async () => {
    const slot = slotOfKey(KEY)
    const proxy = await startRespProxy('redis://127.0.0.1:1', {
      REDIS_CLUSTER_NODES: cluster.nodes.map((node) => `127.0.0.1:${node.port}`).join(','),
      REDIS_CLUSTER_REFRESH: '100',
      REDIS_COMMAND_TIMEOUT: '10000',
    })
    const reader = new Redis({ port: proxy.port, host: '127.0.0.1', lazyConnect: true })
    try {
      await reader.connect()
      await waitReady(proxy.service)
      expect(proxy.service.invalidation()).toBe('on')
      expect(await cluster.command(owner, 'SET', KEY, 'old')).toBe('OK')
      // The slot has no owner anywhere (each node forgets it in its own
      // view); the proxy's map, read every 100 ms, loses it too (were it
      // not yet, the read would go out at once, and the gate would hold
      // Redis's refusal: the check below that nothing is held says so).
      for (const node of cluster.nodes) {
        expect(await cluster.command(node.port, 'CLUSTER', 'DELSLOTS', String(slot))).toBe('OK')
      }
      for (const node of cluster.nodes) expect(await owned(node.port, slot)).toBe(false)
      await sleep(1000)
      const unstoredBefore = proxy.service.stats().unstoredLoads
      // Redis's replies to the read, once it goes out, are held at the gate.
      gate.holdNextRead()
      const answer = reader.get(KEY)
      // It waits: nothing is sent while the slot has no owner.
      await sleep(300)
      expect(gate.held()).toBe('')
      // The owner takes the slot again; the proxy's map finds it, and the
      // waiting read's GET and PTTL go to it.
      expect(await cluster.command(owner, 'CLUSTER', 'ADDSLOTS', String(slot))).toBe('OK')
      await gate.readSent()
      // Redis has answered it (held): it ran before the write.
      await askUntil(
        async () => gate.held(),
        (held) => held.includes('$3\r\nold\r\n'),
      )
      // Redis ran the read, then runs this write: the read's replies and the
      // write's invalidation reach the proxy in one chunk. The invalidation
      // is read before the waiting read's answer is taken (a promise's), so
      // the proxy cannot tell which came first, and must not store it.
      expect(await cluster.command(owner, 'SET', KEY, 'new')).toBe('OK')
      await askUntil(
        async () => gate.held(),
        (held) => held.includes('invalidate'),
      )
      gate.release()
      expect(await answer).toBe('old')
      expect(proxy.service.stats().unstoredLoads).toBe(unstoredBefore + 1)
      expect(proxy.service.peek(KEY)).toBeNull()
      // The next read asks the owner, and gets the write.
      expect(await reader.get(KEY)).toBe('new')
      // With no write in its flight, a read is stored.
      await askUntil(
        async () => proxy.service.peek(KEY),
        (value) => value !== null,
      )
      expect(Buffer.from(proxy.service.peek(KEY) ?? []).toString()).toBe('new')
    } finally {
      gate.release()
      reader.disconnect()
      await proxy.close()
    }
  }, 30_000)
})
