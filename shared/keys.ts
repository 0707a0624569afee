/**
 * Keys travel as byte strings (one char per byte, latin1) so RESP's binary keys
 * and HTTP's UTF-8 keys share one cache. These helpers convert at the edges.
 */

const NON_ASCII = /[\u0080-\uffff]/

/** A byte string shown as UTF-8 text (invalid sequences become U+FFFD). */
export function keyToText(key: string): string {
  return NON_ASCII.test(key) ? Buffer.from(key, 'latin1').toString('utf8') : key
}

export function keyFromBytes(bytes: Uint8Array): string {
  // A Buffer (every RESP argument) needs no view of its own.
  return (
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  ).toString('latin1')
}

export function keyToBytes(key: string): Buffer {
  return Buffer.from(key, 'latin1')
}
