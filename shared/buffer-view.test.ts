import { Buffer } from 'node:buffer'
import { describe, expect, it } from 'vitest'
import { viewAt } from './buffer-view.js'

const viewOf = (chunk: Buffer, start: number, end: number) =>
  viewAt(chunk.buffer, chunk.byteOffset + start, end - start)

describe('viewAt', () => {
  it('is a Buffer over the same bytes as subarray', () => {
    const chunk = Buffer.from('xx*1\r\n$4\r\nPING\r\nyy')
    const view = viewOf(chunk, 10, 14)
    expect(Buffer.isBuffer(view)).toBe(true)
    expect(view).toBeInstanceOf(Buffer)
    expect(view.toString('latin1')).toBe('PING')
    expect(view.equals(chunk.subarray(10, 14))).toBe(true)
    expect(view.byteOffset).toBe(chunk.byteOffset + 10)
    chunk[10] = 0x70
    expect(view.toString()).toBe('pING')
  })

  it('keeps Buffer methods, and its own views are Buffers too', () => {
    const view = viewOf(Buffer.from('hello world'), 6, 11)
    expect(view.readUInt8(0)).toBe(0x77)
    expect(view.indexOf('r')).toBe(2)
    expect(Buffer.concat([view, view]).toString()).toBe('worldworld')
    const inner = view.subarray(1, 3)
    expect(Buffer.isBuffer(inner)).toBe(true)
    expect(inner.toString()).toBe('or')
    expect(view.toString('hex')).toBe(Buffer.from('world').toString('hex'))
    expect(view).toEqual(Buffer.from('world'))
    expect(view.constructor).toBe(Buffer)
  })

  it('views a chunk that is itself a view of a larger pool', () => {
    const pool = Buffer.from('0123456789')
    const chunk = pool.subarray(3, 9)
    expect(viewOf(chunk, 1, 4).toString()).toBe('456')
    expect(viewOf(chunk, 2, 2).length).toBe(0)
  })
})
