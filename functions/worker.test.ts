import { describe, expect, it } from 'vitest'
import { createWorker } from './worker.js'

describe('createWorker', () => {
  it('answers 500 naming REDIS_CLUSTER_NODES: a cluster is the Node proxy’s alone', async () => {
    const worker = createWorker()
    const res = await worker.fetch(new Request('http://proxy/get/k'), {
      REDIS_CLUSTER_NODES: '10.0.0.1:7000',
    })
    expect(res.status).toBe(500)
    expect(await res.text()).toBe(
      'redis-proxy: Invalid REDIS_CLUSTER_NODES="10.0.0.1:7000": a Redis Cluster is served by the Node proxy only, not the Worker\n',
    )
  })
})
