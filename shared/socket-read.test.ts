import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { connect as connectTls, createServer as createTlsServer } from 'node:tls'
import { afterEach, describe, expect, it } from 'vitest'
import { makePki } from '../test/harness/tls.js'
import { readChunks, readOption } from './socket-read.js'

const servers: Server[] = []
const sockets: Socket[] = []

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy()
  for (const server of servers.splice(0)) server.close()
})

/** A server whose accepted sockets are read by readChunks; resolves with the first one. */
async function accepted(): Promise<{
  client: Socket
  server: Socket
  chunks: Buffer[]
  fast: boolean
}> {
  const chunks: Buffer[] = []
  const server = createServer({ allowHalfOpen: true })
  servers.push(server)
  const got = new Promise<{ server: Socket; fast: boolean }>((resolve) =>
    server.once('connection', (socket: Socket) => {
      sockets.push(socket)
      resolve({ server: socket, fast: readChunks(socket, (chunk) => chunks.push(chunk)) })
    }),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const client = connect({ port, host: '127.0.0.1' })
  sockets.push(client)
  await once(client, 'connect')
  return { client, ...(await got), chunks }
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

const total = (chunks: Buffer[]) => Buffer.concat(chunks).toString('latin1')

describe('readChunks', () => {
  it('reads an accepted TCP socket without the readable stream on this Node', async () => {
    const { fast } = await accepted()
    expect(fast).toBe(true)
  })

  it('hands over chunks that keep their bytes after later reads', async () => {
    const { client, chunks } = await accepted()
    client.write('first')
    await until(() => total(chunks) === 'first')
    const first = chunks[0] as Buffer
    // Later reads land in the same read buffer; the first chunk is a copy.
    for (let i = 0; i < 20; i++) {
      client.write(`${'x'.repeat(1000 * i)}|`)
      await until(() => total(chunks).split('|').length === i + 2)
    }
    expect(first.toString('latin1')).toBe('first')
    expect(total(chunks).length).toBe(5 + 190_000 + 20)
  })

  it('delivers every byte of a large write, in order', async () => {
    const { client, chunks } = await accepted()
    const sent = Buffer.alloc(1_000_000)
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7) & 0xff
    client.write(sent)
    await until(() => chunks.reduce((n, c) => n + c.length, 0) === sent.length)
    expect(Buffer.concat(chunks).equals(sent)).toBe(true)
  })

  it('stops reading while paused and goes on when resumed', async () => {
    const { client, server, chunks } = await accepted()
    client.write('a')
    await until(() => chunks.length === 1)
    server.pause()
    client.write('b')
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(total(chunks)).toBe('a')
    server.resume()
    await until(() => total(chunks) === 'ab')
  })

  it("emits 'end' when the client half-closes, after its last bytes", async () => {
    const { client, server, chunks } = await accepted()
    const ended = once(server, 'end').then(() => total(chunks))
    client.end('last')
    expect(await ended).toBe('last')
  })

  it("falls back to 'data' for a socket that already holds bytes it read, and loses none", async () => {
    const server = createServer()
    servers.push(server)
    const accepted = new Promise<Socket>((resolve) =>
      server.once('connection', (socket: Socket) => {
        sockets.push(socket)
        // Read by the stream, not taken: the bytes wait in its buffer.
        socket.pause()
        resolve(socket)
      }),
    )
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    const client = connect({ port, host: '127.0.0.1' })
    sockets.push(client)
    const socket = await accepted
    client.write('early')
    await until(() => socket.readableLength === 5)
    const chunks: Buffer[] = []
    expect(readChunks(socket, (chunk) => chunks.push(chunk))).toBe(false)
    socket.resume()
    client.write('|later')
    await until(() => total(chunks) === 'early|later')
  })

  it("falls back to 'data' for a TLS socket", async () => {
    const pki = makePki()
    const server = createTlsServer({ key: pki.read(pki.serverKey), cert: pki.read(pki.serverCert) })
    pki.remove()
    servers.push(server)
    const chunks: Buffer[] = []
    const fast = new Promise<boolean>((resolve) =>
      server.once('secureConnection', (socket) => {
        sockets.push(socket)
        resolve(readChunks(socket, (chunk) => chunks.push(chunk)))
      }),
    )
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    const client = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false })
    sockets.push(client)
    await once(client, 'secureConnect')
    expect(await fast).toBe(false)
    client.write('over tls')
    await until(() => total(chunks) === 'over tls')
  })
})

describe('readOption', () => {
  it('reads a connected socket into chunks it may keep', async () => {
    const server = createServer((socket) => {
      sockets.push(socket)
      socket.write('one')
      // 'two' only once the client has read 'one': two reads, whatever the timing.
      socket.once('data', () => socket.write('two'))
    })
    servers.push(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as { port: number }).port
    const chunks: Buffer[] = []
    const client = connect({ port, host: '127.0.0.1', onread: readOption((c) => chunks.push(c)) })
    sockets.push(client)
    await until(() => total(chunks) === 'one')
    client.write('go')
    await until(() => chunks.length === 2)
    // The second read landed in the same read buffer: the first chunk is a copy.
    expect(chunks.map((c) => c.toString('latin1'))).toEqual(['one', 'two'])
  })
})
