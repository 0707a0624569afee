/**
 * The floor for a RESP server in Node on this machine: a bare node:net server
 * that reads and writes each socket the way the sidecar does
 * (shared/socket-read.ts, shared/socket-write.ts), frames the commands in
 * each read, and answers every GET with one fixed
 * bulk of the size under test, every other command with an empty array
 * (redis-benchmark opens with CONFIG GET). No cache, no backend, no decoder
 * beyond finding where each command ends: what is left is the cost of one
 * read callback and one socket write per batch of commands, which every
 * Node server pays before doing any work of its own.
 *
 *   node bare-resp.js <port> <valueBytes>
 */
import { createServer, type Socket } from 'node:net'
import { readChunks } from '../../shared/socket-read.js'
import { Framing, frameCommand, nameAt, nameLength, Out } from './bare-io.js'

const port = Number(process.argv[2])
const valueBytes = Number(process.argv[3])
const BULK = Buffer.from(`$${valueBytes}\r\n${'v'.repeat(valueBytes)}\r\n`, 'latin1')
const EMPTY_ARRAY = Buffer.from('*0\r\n')
// Whether the command frame() last read whole is a GET.
let framedGet = false

/** frameCommand, with `framedGet` set for a whole command. */
function frame(bytes: Buffer, at: number): number {
  const end = frameCommand(bytes, at)
  if (end >= 0) {
    framedGet =
      nameLength === 3 &&
      ((bytes[nameAt] as number) | 0x20) === 0x67 &&
      ((bytes[nameAt + 1] as number) | 0x20) === 0x65 &&
      ((bytes[nameAt + 2] as number) | 0x20) === 0x74
  }
  return end
}

function serve(socket: Socket): void {
  const framing = new Framing()
  // Written as the sidecar's output writes, once after the loop turn's reads.
  const out = new Out(socket)
  const answer = (): void => {
    const reply = framedGet ? BULK : EMPTY_ARRAY
    out.put(reply, 0, reply.length)
  }
  readChunks(socket, (chunk) => framing.take(chunk, frame, answer))
  socket.on('error', () => {})
}

const server = createServer({ noDelay: true }, serve)
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => {
  server.close()
  process.exit(0)
})
