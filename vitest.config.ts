import { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { defineConfig } from 'vitest/config'
import { workerdPoolOptions } from './test/workerd/pool-options.js'

// Every lent read's bytes overwritten once it is handled, in every test and
// in the proxies they spawn: a view of one kept past its read reads garbage
// at once (see shared/socket-read.ts, lendingReadOption).
const env = { REDIS_PROXY_POISON_READS: '1' }

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          env,
          include: ['functions/**/*.test.ts', 'sidecar/**/*.test.ts', 'shared/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          env,
          include: ['test/**/*.test.ts'],
          exclude: ['test/workerd/**'],
          setupFiles: ['test/harness/setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
      {
        // The Worker inside real workerd (miniflare): see test/workerd/pool-options.ts.
        plugins: [cloudflareTest(workerdPoolOptions)],
        test: {
          name: 'workerd',
          include: ['test/workerd/**/*.test.ts'],
          globalSetup: ['test/workerd/global-setup.ts'],
          // After the Node projects, so workerd's start-up does not compete
          // with their timing-sensitive suites for the CPU.
          sequence: { groupOrder: 1 },
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
    ],
  },
})
