/**
 * Redis Cluster's key to slot mapping, as Redis's crc16.c and keyHashSlot
 * compute it: CRC16/XMODEM (polynomial 0x1021, initial value 0, no
 * reflection) of the key, or of its hash tag, modulo 16384.
 */

export const SLOTS = 16384

const TABLE = (() => {
  const table = new Uint16Array(256)
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1
    table[byte] = crc & 0xffff
  }
  return table
})()

/** CRC16/XMODEM of `bytes[start, end)`. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ (bytes[i] as number)) & 0xff] as number)
  }
  return crc
}

const OPEN = 123 // {
const CLOSE = 125 // }

/**
 * The slot of a key. Only the part between the first `{` and the first `}`
 * after it is hashed, when that part is not empty (`{user}:a` and `{user}:b`
 * share a slot; `{}a` and `a{` hash whole), exactly as keyHashSlot does.
 */
export function keyHashSlot(key: Uint8Array): number {
  const length = key.length
  let open = -1
  for (let i = 0; i < length; i++) {
    if (key[i] === OPEN) {
      open = i
      break
    }
  }
  if (open === -1) return crc16(key) & (SLOTS - 1)
  let close = -1
  for (let i = open + 1; i < length; i++) {
    if (key[i] === CLOSE) {
      close = i
      break
    }
  }
  if (close === -1 || close === open + 1) return crc16(key) & (SLOTS - 1)
  return crc16(key, open + 1, close) & (SLOTS - 1)
}

/** The slot of a key held as a byte string (one char per byte, see shared/keys.ts). */
export function slotOfKey(key: string): number {
  return keyHashSlot(Buffer.from(key, 'latin1'))
}
