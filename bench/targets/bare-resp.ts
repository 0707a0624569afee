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
import { SocketWriter } from '../../shared/socket-write.js'

const port = Number(process.argv[2])
const valueBytes = Number(process.argv[3])
const BULK = Buffer.from(`$${valueBytes}\r\n${'v'.repeat(valueBytes)}\r\n`, 'latin1')
const EMPTY_ARRAY = Buffer.from('*0\r\n')
const SLAB_BYTES = 64 * 1024
const CR = 13
const STAR = 42
const DOLLAR = 36

/** Where the line starting at `at` ends (its CR), or -1 when not all of it is here. */
function lineEnd(bytes: Buffer, at: number): number {
  const cr = bytes.indexOf(CR, at)
  return cr < 0 || cr + 1 >= bytes.length ? -1 : cr
}

function parseCount(bytes: Buffer, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) n = n * 10 + (bytes[i] as number) - 48
  return n
}

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
  const count = parseCount(bytes, at + 1, headEnd)
  let cursor = headEnd + 2
  let get = false
  for (let arg = 0; arg < count; arg++) {
    if (cursor >= bytes.length) return -1
    if (bytes[cursor] !== DOLLAR) throw new Error('bare-resp: bulk arguments only')
    const lenEnd = lineEnd(bytes, cursor)
    if (lenEnd < 0) return -1
    const length = parseCount(bytes, cursor + 1, lenEnd)
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

let pending: (() => void)[] = []
function flushPending(): void {
  const run = pending
  pending = []
  for (const flush of run) flush()
}

function serve(socket: Socket): void {
  let slab = Buffer.allocUnsafe(SLAB_BYTES)
  let start = 0
  let end = 0
  let held: Buffer | null = null
  let due = false
  const flushOne = (): void => {
    due = false
    flush()
  }
  // Written as the sidecar's output writes (shared/socket-write.ts).
  const writer = new SocketWriter(socket, () => {})
  const flush = (): void => {
    if (end === start) return
    writer.write(slab.subarray(start, end))
    // Taken by the kernel at once: the slab is free again, as the sidecar's output reuses it.
    if (writer.pending === 0) end = 0
    start = end
  }
  readChunks(socket, (chunk) => {
    const bytes = held === null ? chunk : Buffer.concat([held, chunk])
    let at = 0
    while (at < bytes.length) {
      const next = frame(bytes, at)
      if (next < 0) break
      const reply = framedGet ? BULK : EMPTY_ARRAY
      if (end + reply.length > slab.length) {
        flush()
        if (end + reply.length > slab.length) {
          slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, reply.length))
          start = 0
          end = 0
        }
      }
      slab.set(reply, end)
      end += reply.length
      at = next
    }
    held = at < bytes.length ? bytes.subarray(at) : null
    // As the sidecar: every client read in this loop turn is answered in one
    // run of writes after the reads (see sidecar/resp/output.ts flushSoon).
    if (end > start && !due) {
      due = true
      pending.push(flushOne)
      if (pending.length === 1) setImmediate(flushPending)
    }
  })
  socket.on('error', () => {})
}

const server = createServer({ noDelay: true }, serve)
server.listen(port, '127.0.0.1')
process.on('SIGTERM', () => {
  server.close()
  process.exit(0)
})
