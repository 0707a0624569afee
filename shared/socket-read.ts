import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net'
import { viewAt } from './buffer-view.js'
import { copyBytes, LOOP_BELOW, putBytes } from './bytes.js'

/**
 * Reading a socket's bytes without Node's readable stream.
 *
 * A 'data' listener costs, per read, a 64 KiB allocation shrunk to what was
 * read (malloc, realloc, an ArrayBuffer and its Buffer), then the stream's
 * push, buffer bookkeeping and event emission. At one command per read
 * (pipeline 1) that was about a third of the user CPU of a bare node:net
 * server answering PING (redis-benchmark -c 50, 400,000 requests: 57-73
 * ticks by 'data' against 41-45 by the path below, copy included). Node's
 * `onread` socket option reads into a buffer the program owns and calls
 * back with the byte count, skipping both.
 *
 * Every socket reads into the one buffer below: a read callback runs to its
 * end before the next read of any socket, so the bytes are only valid during
 * the callback. For client sockets (`readChunks`, `readOption`) they are
 * copied out into a Buffer of their own (from Node's pool when small),
 * because what the callers make of a chunk outlives it: argument views held
 * by a forwarded command or a fetch, a partial command kept until its tail
 * arrives, a paused remainder. The backend connection takes them lent
 * (`lendingReadOption`), and copies what it keeps itself.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024)

export type OnChunk = (chunk: Buffer) => void

// Read once: a view of the read bytes is made over them, not by subarray,
// which pays a species lookup and these two getters on every read.
const READ_BYTES = READ_BUFFER.buffer
const READ_OFFSET = READ_BUFFER.byteOffset

function copyOut(length: number): Buffer {
  // Node's pool serves lengths under 4 KiB; longer ones get a buffer of
  // their own, as a 'data' chunk of that length had.
  const chunk = Buffer.allocUnsafe(length)
  if (length < LOOP_BELOW) copyBytes(READ_BUFFER, 0, length, chunk, 0)
  else putBytes(chunk, new Uint8Array(READ_BYTES, READ_OFFSET, length))
  return chunk
}

/**
 * `onread` for a socket the program connects itself (`net.connect`), the
 * option's documented use: `onChunk` gets each read's bytes as a Buffer the
 * caller may keep.
 */
export function readOption(onChunk: OnChunk): OnReadOpts {
  return { buffer: READ_BUFFER, callback: onRead(onChunk) }
}

/**
 * As `readOption`, but `onChunk` gets a view of the read buffer itself,
 * valid only until it returns: the next read of any socket reuses the
 * memory. For a reader that copies what it keeps (see `isLent`), so a read
 * that nothing keeps allocates nothing. Reads of a backend connection copied
 * into a buffer each were the allocation that drove V8's full collections
 * on large values (see shared/redis/resp-source.ts, #onData).
 *
 * With REDIS_PROXY_POISON_READS=1 in the environment (the test suite sets
 * it), the bytes are overwritten once `onChunk` returns, so a view kept
 * past it reads garbage in any test, not only when a later read happens to
 * land on the same bytes.
 */
export function lendingReadOption(onChunk: OnChunk): OnReadOpts {
  return {
    buffer: READ_BUFFER,
    callback: (length) => {
      try {
        onChunk(viewAt(READ_BYTES, READ_OFFSET, length))
      } finally {
        if (POISON) READ_BUFFER.fill(0xee, 0, length)
      }
      return true
    },
  }
}

/** Whether `bytes` is a view of memory a lending read will reuse: to be copied if kept. */
export function isLent(bytes: Uint8Array): boolean {
  return bytes.buffer === READ_BYTES
}

const POISON = process.env.REDIS_PROXY_POISON_READS === '1'

// true: go on reading (false would stop the handle).
function onRead(onChunk: OnChunk): (length: number) => boolean {
  return (length) => {
    onChunk(copyOut(length))
    return true
  }
}

// The fields `onread` sets on a socket, found by their names on a socket made
// with the option. A server's sockets are made by net.Server, which has no
// such option; setting the same fields right after the accept, before the
// first read, gives them the same path. Where a Node version names them
// differently, or its handle cannot read into a user buffer, accepted
// sockets fall back to 'data'.
type OnreadFields = { buffer: symbol; callback: symbol }
let onreadFields: OnreadFields | null | undefined

function findOnreadFields(): OnreadFields | null {
  const onread: OnReadOpts = { buffer: Buffer.alloc(1), callback: () => true }
  // The constructor takes the option, which its type does not list.
  const probe = new Socket({ onread } as SocketConstructorOpts)
  const named = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]))
  probe.destroy()
  const buffer = named.get('kBuffer')
  const callback = named.get('kBufferCb')
  const generator = named.get('kBufferGen')
  const record = probe as unknown as Record<symbol, unknown>
  if (buffer === undefined || callback === undefined || generator === undefined) return null
  // The probe's fields must hold what the option gave, or these are not them;
  // the generator must be unset (null), as an accepted socket's is, for a
  // read to take the buffer as it is.
  if (!Buffer.isBuffer(record[buffer]) || typeof record[callback] !== 'function') return null
  if (record[generator] !== null) return null
  return { buffer, callback }
}

type UserBufferHandle = { useUserBuffer?: (buffer: Uint8Array) => void }

/**
 * Has `socket`'s bytes go to `onChunk`: by `onread` when the socket is a
 * plain TCP socket just accepted (nothing read yet), else by 'data' (TLS
 * sockets, sockets Node made some other way, a Node without the fields).
 * Pause and resume work either way (net.Socket stops and starts its handle
 * for `onread` sockets); the end of input is still the 'end' event.
 *
 * @returns whether the `onread` path was taken.
 */
export function readChunks(socket: Socket, onChunk: OnChunk): boolean {
  if (onreadFields === undefined) onreadFields = findOnreadFields()
  const fields = onreadFields
  const handle = (socket as unknown as { _handle?: UserBufferHandle | null })._handle
  const plain = !(socket as Socket & { encrypted?: boolean }).encrypted
  if (
    fields === null ||
    !plain ||
    handle === null ||
    handle === undefined ||
    typeof handle.useUserBuffer !== 'function' ||
    socket.readableLength > 0
  ) {
    socket.on('data', onChunk)
    return false
  }
  const record = socket as unknown as Record<symbol, unknown>
  record[fields.buffer] = READ_BUFFER
  record[fields.callback] = onRead(onChunk)
  handle.useUserBuffer(READ_BUFFER)
  return true
}
