import { afterAll } from 'vitest'
import { killLeftovers } from './process.js'

// Runs after the file's own afterAll hooks (hooks stack): whatever a failed
// test left running is stopped before the next file starts.
afterAll(() => killLeftovers())
