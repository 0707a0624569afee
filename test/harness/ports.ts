import { createServer, type Server } from 'node:net'

/** Starts `server` on a port the kernel picks on loopback; resolves with that port. */
export function listenOnLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : 0)
    })
  })
}

/** A port the kernel just handed out on loopback; free unless someone races us for it. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.unref()
  const port = await listenOnLoopback(server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
