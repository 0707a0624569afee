/**
 * The one port every backend implements. Keys are byte strings: one UTF-16 code
 * unit per byte (latin1), so any binary key survives the trip and can be a Map
 * key. Values are raw bytes. A missing key is `null`; failures reject with the
 * named errors of shared/errors.ts.
 */
export type RedisSource = {
  get(key: string): Promise<Uint8Array | null>
  /** What the connection is doing now, for status and readiness. */
  state(): SourceState
  close(): Promise<void>
}

export type SourceState = 'connecting' | 'ready' | 'reconnecting' | 'closed'
