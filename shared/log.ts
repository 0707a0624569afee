import { LOG_LEVELS, type LogLevel } from './config.js'

export type Fields = Record<string, unknown>

/**
 * The logging port every part of the proxy writes to. On Node it is pino
 * (shared/log-pino.ts); runtimes without it (Workers) use the line logger below.
 */
export type Logger = {
  debug(msg: string, fields?: Fields): void
  info(msg: string, fields?: Fields): void
  warn(msg: string, fields?: Fields): void
  error(msg: string, fields?: Fields): void
}

/** One JSON object per line on stderr; levels below `level` cost one comparison. */
export function createLogger(level: LogLevel, write: (line: string) => void = stderr): Logger {
  const threshold = LOG_LEVELS.indexOf(level)
  const at =
    (name: LogLevel) =>
    (msg: string, fields?: Fields): void => {
      if (LOG_LEVELS.indexOf(name) < threshold) return
      write(`${JSON.stringify({ level: name, time: new Date().toISOString(), msg, ...fields })}\n`)
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

export const silentLogger: Logger = createLogger('silent')

function stderr(line: string): void {
  process.stderr.write(line)
}
