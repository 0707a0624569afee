import { readFileSync } from 'node:fs'
import type { ReadTextFile } from './secrets.js'

/** The file reader port on Node; the Worker has no filesystem and passes none. */
export const readTextFile: ReadTextFile = (path) => readFileSync(path, 'utf8')
