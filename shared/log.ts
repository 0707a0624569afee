import { LOG_LEVELS, type LogLevel } from './config.js'

export type Fields = Record<string, unknown>
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
