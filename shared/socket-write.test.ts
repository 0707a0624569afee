import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { connect as connectTls, createServer as createTlsServer } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { closeLoopback, collect, listening, pair, track, until } from '../test/harness/loopback.js'
import { makePki } from '../test/harness/tls.js'
import { SocketWriter } from './socket-write.js'

afterEach(closeLoopback)

/** `count` distinct buffers of `size` bytes: buffer i holds i's bytes, so order shows. */
function numbered(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = Buffer.alloc(size)
    for (let at = 0; at + 4 <= size; at += 4) bytes.writeUInt32LE(i, at)
    return bytes
  })
}

describe('SocketWriter', () => {
  it('writes to a plain TCP socket through its handle on this Node', async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    expect(writer.direct).toBe(true)
    const chunks = collect(client)
    client.resume()
    writer.write(Buffer.from('+OK\r\n'))
    writer.write(Buffer.from(':1\r\n'))
    await until(() => Buffer.concat(chunks).length === 9)
    expect(Buffer.concat(chunks).toString()).toBe('+OK\r\n:1\r\n')
    // Taken by the kernel at once: nothing pending, neither here nor in the stream.
    expect(writer.pending).toBe(0)
    expect(server.writableLength).toBe(0)
  })

  it('keeps bytes the kernel could not take, in order, and calls onDrain once they are written', async () => {
    const { client, server } = await pair()
    let drains = 0
    const writer = new SocketWriter(server, () => drains++)
    // More than loopback's socket buffers hold while the client reads nothing.
    const parts = numbered(64, 256 * 1024)
    for (const part of parts) writer.write(part)
    expect(writer.pending).toBeGreaterThan(0)
    expect(drains).toBe(0)
    const chunks = collect(client)
    client.resume()
    const total = Buffer.concat(parts).length
    await until(() => Buffer.concat(chunks).length === total)
    expect(Buffer.concat(chunks).equals(Buffer.concat(parts))).toBe(true)
    await until(() => drains > 0)
    expect(writer.pending).toBe(0)
    expect(drains).toBe(1)
  })

  it('keeps order with socket.write on the same socket, whichever holds bytes', async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    const parts = numbered(40, 200 * 1024)
    // Alternated: the stream's writes queue behind the handle's, and while
    // the stream holds some the writer goes through it too.
    for (const [i, part] of parts.entries()) {
      if (i % 3 === 0) server.write(part)
      else writer.write(part)
    }
    expect(writer.pending).toBeGreaterThan(0)
    const chunks = collect(client)
    client.resume()
    const total = Buffer.concat(parts).length
    await until(() => Buffer.concat(chunks).length === total)
    expect(Buffer.concat(chunks).equals(Buffer.concat(parts))).toBe(true)
  })

  it('ends after what it queued: socket.end() waits for the handle writes', async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    const parts = numbered(16, 256 * 1024)
    for (const part of parts) writer.write(part)
    expect(writer.pending).toBeGreaterThan(0)
    server.end()
    const chunks = collect(client)
    const ended = once(client, 'end')
    client.resume()
    await ended
    expect(Buffer.concat(chunks).equals(Buffer.concat(parts))).toBe(true)
  })

  it('leaves a socket that has ended or been destroyed to the stream, which refuses the write', async () => {
    const { server } = await pair()
    const writer = new SocketWriter(server, () => {})
    server.on('error', () => {})
    server.end()
    expect(() => writer.write(Buffer.from('late'))).not.toThrow()
    server.destroy()
    expect(() => writer.write(Buffer.from('later'))).not.toThrow()
  })

  it('destroys the socket with the write error when the peer is gone', async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    const failed = new Promise<Error>((resolve) => server.on('error', resolve))
    // Not reading, so the reset is found by a write, not by a read.
    server.pause()
    client.resetAndDestroy()
    await once(client, 'close')
    // Writes into a reset connection fail (EPIPE or ECONNRESET), at once or
    // on completion; either way the socket goes, with the error named.
    for (let i = 0; i < 100 && !server.destroyed; i++) {
      writer.write(Buffer.alloc(64 * 1024))
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    const error = (await failed) as NodeJS.ErrnoException
    expect(server.destroyed).toBe(true)
    expect(error.syscall).toBe('write')
    expect(['EPIPE', 'ECONNRESET']).toContain(error.code)
  })

  it("restarts the socket's idle timer on each write, as socket.write does", async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    client.resume()
    let timedOutAt = 0
    server.setTimeout(300, () => {
      timedOutAt = Date.now()
    })
    const started = Date.now()
    // A write every 50 ms for a second: the peer only receives, and is not idle.
    while (Date.now() - started < 1000) {
      writer.write(Buffer.from('+msg\r\n'))
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(timedOutAt).toBe(0)
    // Once the writes stop, the timer runs out.
    await until(() => timedOutAt > 0)
  })

  it('restarts the idle timer when a queued write completes', async () => {
    const { client, server } = await pair()
    const writer = new SocketWriter(server, () => {})
    server.setTimeout(60_000)
    const timed = server as Socket & { _unrefTimer: () => void }
    const restart = timed._unrefTimer.bind(server)
    let restarts = 0
    timed._unrefTimer = () => {
      restarts++
      restart()
    }
    // More than loopback's socket buffers hold: some writes are queued.
    for (const part of numbered(64, 256 * 1024)) writer.write(part)
    expect(writer.pending).toBeGreaterThan(0)
    // Every write restarted it; from here on only completions can.
    const afterWrites = restarts
    expect(afterWrites).toBe(64)
    client.resume()
    await until(() => writer.pending === 0)
    expect(restarts).toBeGreaterThan(afterWrites)
  })

  it('writes a socket still connecting through the stream, which sends it once connected', async () => {
    const { port, accepted } = await listening()
    const client = connect({ port, host: '127.0.0.1' })
    track(client)
    const writer = new SocketWriter(client, () => {})
    expect(client.connecting).toBe(true)
    writer.write(Buffer.from('*1\r\n$4\r\nPING\r\n'))
    const [socket] = await accepted
    track(socket)
    const chunks = collect(socket)
    await until(() => Buffer.concat(chunks).toString() === '*1\r\n$4\r\nPING\r\n')
    expect(client.destroyed).toBe(false)
  })

  it('refuses a write after end() as the stream does', async () => {
    const { server } = await pair()
    const writer = new SocketWriter(server, () => {})
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => server.on('error', resolve))
    server.end()
    writer.write(Buffer.from('late'))
    expect((await failed).code).toBe('ERR_STREAM_WRITE_AFTER_END')
  })

  it("counts the stream's own bytes as pending, and drains only once they are written too", async () => {
    const { client, server } = await pair()
    let drains = 0
    let pendingAtDrain = -1
    const writer: SocketWriter = new SocketWriter(server, () => {
      drains++
      pendingAtDrain = writer.pending
    })
    // Queued direct writes, then writes the stream takes (it holds bytes
    // once one of its own is queued behind them), one small enough that
    // the stream emits no 'drain' of its own.
    for (const part of numbered(64, 256 * 1024)) writer.write(part)
    const queued = writer.pending
    expect(queued).toBeGreaterThan(0)
    server.write(Buffer.alloc(1024, 1))
    expect(server.writableLength).toBe(1024)
    writer.write(Buffer.alloc(10, 2))
    expect(server.writableLength).toBe(1034)
    expect(writer.pending).toBe(queued + 1034)
    const chunks = collect(client)
    client.resume()
    const total = 64 * 256 * 1024 + 1034
    await until(() => Buffer.concat(chunks).length === total)
    await until(() => drains > 0)
    expect(pendingAtDrain).toBe(0)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(drains).toBe(1)
  })

  it('does not call onDrain for a socket destroyed with writes queued', async () => {
    const { client, server } = await pair()
    let drains = 0
    const writer = new SocketWriter(server, () => drains++)
    for (const part of numbered(64, 256 * 1024)) writer.write(part)
    expect(writer.pending).toBeGreaterThan(0)
    server.destroy()
    client.resume()
    await once(server, 'close')
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(drains).toBe(0)
  })

  it('writes a TLS socket through the stream', async () => {
    const pki = makePki()
    const tlsServer = createTlsServer({
      key: pki.read(pki.serverKey),
      cert: pki.read(pki.serverCert),
    })
    pki.remove()
    track(tlsServer)
    const accepted = once(tlsServer, 'secureConnection') as Promise<[Socket]>
    tlsServer.listen(0, '127.0.0.1')
    await once(tlsServer, 'listening')
    const port = (tlsServer.address() as { port: number }).port
    const client = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false })
    track(client)
    const [socket] = await accepted
    track(socket)
    const writer = new SocketWriter(socket, () => {})
    expect(writer.direct).toBe(false)
    const chunks = collect(client)
    writer.write(Buffer.from('+PONG\r\n'))
    await until(() => Buffer.concat(chunks).toString() === '+PONG\r\n')
  })
})
