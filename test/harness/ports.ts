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

// Ports this process has handed out. The kernel may offer a port again as
// soon as its probe closes, so two calls in a row (a proxy's HTTP and RESP
// ports) could get the same one; seen once as EADDRINUSE on the second bind.
const handedOut = new Set<number>()

/**
 * A port the kernel just handed out on loopback, never one this process
 * handed out before; free unless another process races us for it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer()
    server.unref()
    const port = await listenOnLoopback(server)
    await new Promise<void>((resolve) => server.close(() => resolve()))
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
}
