import { describe, expect, it } from 'vitest'
import { createPinoLogger } from './log-pino.js'

function capture() {
  const lines: string[] = []
  return { lines, destination: { write: (line: string) => void lines.push(line) } }
}

describe('createPinoLogger', () => {
  it('writes one JSON line per call with the level name, message and fields', () => {
    const { lines, destination } = capture()
    createPinoLogger('info', destination).warn('backing redis error', { error: 'ECONNREFUSED' })
    expect(lines).toHaveLength(1)
    expect(lines[0]?.endsWith('\n')).toBe(true)
    const entry = JSON.parse(lines[0] ?? '')
    expect(entry).toMatchObject({
      level: 'warn',
      msg: 'backing redis error',
      error: 'ECONNREFUSED',
      pid: process.pid,
    })
    expect(new Date(entry.time).toISOString()).toBe(entry.time)
  })

  it('drops calls below the configured level', () => {
    const { lines, destination } = capture()
    const log = createPinoLogger('warn', destination)
    log.debug('noise')
    log.info('noise')
    log.error('kept')
    expect(lines.map((line) => JSON.parse(line).msg)).toEqual(['kept'])
  })

  it('writes nothing at silent', () => {
    const { lines, destination } = capture()
    createPinoLogger('silent', destination).error('not shown')
    expect(lines).toEqual([])
  })

  it('never prints a field named password', () => {
    const { lines, destination } = capture()
    createPinoLogger('info', destination).info('starting', { redis: { password: 'hunter2' } })
    expect(lines[0]).not.toContain('hunter2')
    expect(JSON.parse(lines[0] ?? '').redis.password).toBe('***')
  })
})

describe('createPinoLogger with bindings', () => {
  it('puts them on every line, after the pid', () => {
    const { lines, destination } = capture()
    const log = createPinoLogger('info', destination, { worker: 2 })
    log.info('http listening', { port: 5000 })
    log.warn('backing redis error')
    expect(lines.map((line) => JSON.parse(line))).toMatchObject([
      { pid: process.pid, worker: 2, msg: 'http listening', port: 5000 },
      { pid: process.pid, worker: 2, msg: 'backing redis error' },
    ])
  })
})
