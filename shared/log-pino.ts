import pino from 'pino'
import type { LogLevel } from './config.js'
import type { Logger } from './log.js'

/** Where log lines go: anything with `write(line)`. */
export type LogDestination = { write(line: string): void }

/**
 * pino, one JSON object per line on stderr (stdout stays free for a program's
 * output). The destination is synchronous: the process logs a handful of lines
 * in its life (start, backend state changes, shutdown) and exits right after
 * the last one, which an asynchronous buffer could lose. Levels below `level`
 * cost one comparison, so debug calls on warm paths are free at `info`.
 */
export function createPinoLogger(
  level: LogLevel,
  destination?: LogDestination,
  /** On every line after `pid` (a worker's slot, so lines of one process read together). */
  bindings: Record<string, unknown> = {},
): Logger {
  const logger = pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level names, not numbers: operators grep for "error", not 50.
      formatters: { level: (label) => ({ level: label }) },
      // Belt and braces: URLs are masked before they are logged; a field that
      // still carries a password never reaches the output.
      redact: { paths: ['password', '*.password'], censor: '***' },
    },
    destination ?? pino.destination({ fd: 2, sync: true }),
  )
  return {
    debug: (msg, fields) => (fields === undefined ? logger.debug(msg) : logger.debug(fields, msg)),
    info: (msg, fields) => (fields === undefined ? logger.info(msg) : logger.info(fields, msg)),
    warn: (msg, fields) => (fields === undefined ? logger.warn(msg) : logger.warn(fields, msg)),
    error: (msg, fields) => (fields === undefined ? logger.error(msg) : logger.error(fields, msg)),
  }
}
