/**
 * The ceiling for Node on this machine: a bare node:http server answering every
 * request with one fixed body of the size under test, as the proxy does on a hit.
 *
 *   node bare-http.js <port> <bodyBytes>
 */
import { createServer } from 'node:http'

const port = Number(process.argv[2])
const body = Buffer.alloc(Number(process.argv[3]), 'v')
const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length }

const server = createServer((_req, res) => {
  res.writeHead(200, headers)
  res.end(body)
})
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => {
  server.close()
  server.closeAllConnections()
})
