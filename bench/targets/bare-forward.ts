/**
 * The floor for a forwarding RESP proxy in Node on this machine: a bare
 * node:net relay that does what twemproxy does for one backend and nothing
 * more. It reads and writes its sockets the way the sidecar does
 * (shared/socket-read.ts, shared/socket-write.ts), finds where each
 * command ends, copies it whole to one connection to Redis, finds where
 * each reply ends and copies it to the client that is owed it, in order.
 * Writes leave after the turn's reads, as the sidecar's do: one write per
 * client and one to Redis per loop turn. No cache, no decoding of a
 * command's name or arguments, no timeouts, no errors beyond ending the
 * process. What it spends per request, any Node proxy spends before its
 * own work: the bench sets it beside twemproxy on the miss path and for
 * forwarded commands to show what bounds those ratios.
 *
 *   node bare-forward.js <port> <redisPort>
 */
import { connect, createServer, type Socket } from 'node:net'
import { readChunks, readOption } from '../../shared/socket-read.js'
import { DOLLAR, Framing, frameCommand, lineEnd, Out, readInt, STAR } from './bare-io.js'

const port = Number(process.argv[2])
const redisPort = Number(process.argv[3])

/**
 * The end of the RESP2 reply at `at`, or -1 when it is not all here yet:
 * nested arrays by counting the items still owed, no recursion.
 */
function frameReply(bytes: Buffer, at: number): number {
  let owed = 1
  let cursor = at
  while (owed > 0) {
    if (cursor >= bytes.length) return -1
    const type = bytes[cursor]
    const end = lineEnd(bytes, cursor)
    if (end < 0) return -1
    owed--
    if (type === DOLLAR) {
      const length = readInt(bytes, cursor + 1, end)
      cursor = length < 0 ? end + 2 : end + 2 + length + 2
      if (cursor > bytes.length) return -1
    } else {
      if (type === STAR) {
        const count = readInt(bytes, cursor + 1, end)
        if (count > 0) owed += count
      }
      cursor = end + 2
    }
  }
  return cursor
}

// The clients owed a reply, in the order their commands went to Redis.
const owed: Out[] = []
let owedHead = 0

const redisFraming = new Framing()
const toClient = (bytes: Buffer, from: number, to: number): void => {
  const client = owed[owedHead++] as Out
  if (owedHead === owed.length) {
    owed.length = 0
    owedHead = 0
  }
  client.put(bytes, from, to)
}
const redis = connect({
  host: '127.0.0.1',
  port: redisPort,
  noDelay: true,
  onread: readOption((chunk) => redisFraming.take(chunk, frameReply, toClient)),
})
redis.on('error', (err) => {
  throw err
})
redis.on('close', () => process.exit(1))
const toRedis = new Out(redis)

function serve(socket: Socket): void {
  const out = new Out(socket)
  const framing = new Framing()
  const forward = (bytes: Buffer, from: number, to: number): void => {
    toRedis.put(bytes, from, to)
    owed.push(out)
  }
  readChunks(socket, (chunk) => framing.take(chunk, frameCommand, forward))
  socket.on('error', () => {})
}

redis.once('connect', () => {
  const server = createServer({ noDelay: true }, serve)
  server.listen(port, '127.0.0.1')
  process.on('SIGTERM', () => {
    server.close()
    process.exit(0)
  })
})
