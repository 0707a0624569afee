import { once } from 'node:events'
import { connect, createServer, Server, type Socket } from 'node:net'

/**
 * Plain sockets over loopback for tests of what a socket is written or read
 * with. Whatever is opened here, or handed to `track`, is closed by
 * `closeLoopback`: call it in `afterEach`.
 */
const servers: Server[] = []
const sockets: Socket[] = []

/** Has `closeLoopback` close `opened` too. */
export function track<T extends Server | Socket>(opened: T): T {
  if (opened instanceof Server) servers.push(opened)
  else sockets.push(opened)
  return opened
}

export function closeLoopback(): void {
  for (const socket of sockets.splice(0)) socket.destroy()
  for (const server of servers.splice(0)) server.close()
}

/** A server on a free loopback port, and its first accepted socket to come. */
export async function listening(): Promise<{ port: number; accepted: Promise<[Socket]> }> {
  const server = track(createServer())
  const accepted = once(server, 'connection') as Promise<[Socket]>
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as { port: number }).port, accepted }
}

/** A connected pair over loopback: `server` is the accepted side, `client` paused until asked. */
export async function pair(): Promise<{ client: Socket; server: Socket }> {
  const { port, accepted } = await listening()
  const client = track(connect({ port, host: '127.0.0.1' }))
  client.pause()
  await once(client, 'connect')
  const [socket] = await accepted
  return { client, server: track(socket) }
}

/** Resolves once `check` holds, polled every 2 ms; fails after 10 s. */
export async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** Everything `socket` receives, as it comes. */
export function collect(socket: Socket): Buffer[] {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  return chunks
}
