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
import { Framing, lineEnd, Out, readInt } from './bare-io.js'

const port = Number(process.argv[2])
const valueBytes = Number(process.argv[3])
const BULK = Buffer.from(`$${valueBytes}\r\n${'v'.repeat(valueBytes)}\r\n`, 'latin1')
const EMPTY_ARRAY = Buffer.from('*0\r\n')
const STAR = 42
const DOLLAR = 36

// Whether the command frame() last read whole is a GET.
let framedGet = false

/**
 * The end of the command at `at` (with `framedGet` set), or -1 when the
 * command is not all here yet. No allocation per command, so the floor
 * counts none. Multibulk only, as the load tools send; anything else
 * throws, which ends this process and the bench part with it.
 */
function frame(bytes: Buffer, at: number): number {
  if (bytes[at] !== STAR) throw new Error('bare-resp: multibulk commands only')
  const headEnd = lineEnd(bytes, at)
  if (headEnd < 0) return -1
  const count = readInt(bytes, at + 1, headEnd)
  let cursor = headEnd + 2
  let get = false
  for (let arg = 0; arg < count; arg++) {
    if (cursor >= bytes.length) return -1
    if (bytes[cursor] !== DOLLAR) throw new Error('bare-resp: bulk arguments only')
    const lenEnd = lineEnd(bytes, cursor)
    if (lenEnd < 0) return -1
    const length = readInt(bytes, cursor + 1, lenEnd)
    const body = lenEnd + 2
    if (body + length + 2 > bytes.length) return -1
    if (arg === 0) {
      get =
        length === 3 &&
        ((bytes[body] as number) | 0x20) === 0x67 &&
        ((bytes[body + 1] as number) | 0x20) === 0x65 &&
        ((bytes[body + 2] as number) | 0x20) === 0x74
    }
    cursor = body + length + 2
  }
  framedGet = get
  return cursor
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
