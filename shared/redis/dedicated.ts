import { connect as connectTcp, isIP, type Socket } from 'node:net'
import { type ConnectionOptions, connect as connectTls } from 'node:tls'
import { BackendReplyError, BackendTimeoutError, BackendUnavailableError } from '../errors.js'
import { type Reply, ReplyDecoder } from './reply-decoder.js'
import { ReplyFramer } from './reply-framer.js'
import { notPrimary } from './resp-source.js'
import { type Address, urlAddress } from './source.js'

export type DedicatedOptions = {
  /** redis:// or rediss:// URL: its user, password and database are the backend's. */
  url: string
  /**
   * Where to connect: the primary known now, with Sentinel.
   * @default the URL's host and port
   */
  address?: Address
  /** Refused unless `ROLE` says primary, as RespSourceOptions.primaryOnly. */
  primaryOnly?: boolean
  /** The client's protocol: the connection speaks it, so replies relay as they are. */
  resp3: boolean
  tls?: ConnectionOptions
  /** Connect and handshake, together. */
  timeoutMs: number
}

/**
 * A backend connection of one client's own, for what would leak into other
 * clients' commands on a shared connection (a transaction, WATCH, a blocking
 * pop, a subscription, MONITOR): connected, authenticated and on the URL's
 * database, speaking the client's protocol, then handed over as a socket
 * whose bytes the caller relays. Rejects with a BackendError when it cannot.
 */
export function openDedicated(options: DedicatedOptions): Promise<Socket> {
  const url = new URL(options.url)
  const { host, port } = options.address ?? urlAddress(url)
  const secure = url.protocol === 'rediss:'
  const socket = secure
    ? connectTls({
        host,
        port,
        ...(isIP(host) === 0 && { servername: host }),
        ...options.tls,
        rejectUnauthorized: true,
      })
    : connectTcp({ host, port, noDelay: true })
  const user = decodeURIComponent(url.username) || 'default'
  const password = url.password === '' ? null : decodeURIComponent(url.password)
  const db = url.pathname.replace(/^\//, '')
  const handshake: string[][] = []
  if (options.resp3)
    handshake.push(['HELLO', '3', ...(password === null ? [] : ['AUTH', user, password])])
  else if (password !== null)
    handshake.push(url.username === '' ? ['AUTH', password] : ['AUTH', user, password])
  if (db !== '' && db !== '0') handshake.push(['SELECT', db])
  // Last, so its reply is the one the check below decodes.
  const role = options.primaryOnly === true ? handshake.push(['ROLE']) - 1 : -1
  return new Promise<Socket>((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    const timer = setTimeout(
      () => fail(new BackendTimeoutError(`no backend connection within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    )
    socket.once('error', (err) => fail(new BackendUnavailableError(err.message, { cause: err })))
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (handshake.length === 0) {
        done()
        return
      }
      const framer = new ReplyFramer()
      let answered = 0
      const onData = (chunk: Buffer) => {
        try {
          framer.push(chunk, (parts) => {
            if (answered === role) {
              const refusal = notPrimary(decodeOne(parts))
              if (refusal !== undefined) {
                fail(new BackendUnavailableError(refusal))
                return
              }
            } else {
              const first = parts[0]
              if (first !== undefined && first[0] === 45) {
                fail(new BackendReplyError(Buffer.concat(parts).toString('latin1').trim().slice(1)))
                return
              }
            }
            if (++answered === handshake.length) {
              socket.off('data', onData)
              done()
            }
          })
        } catch (err) {
          fail(err as Error)
        }
      }
      socket.on('data', onData)
      let wire = ''
      for (const args of handshake) {
        wire += `*${args.length}\r\n`
        for (const arg of args) wire += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
      }
      socket.write(wire)
    })
    function done(): void {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      resolve(socket)
    }
  })
}

/** One framed reply as a value. */
function decodeOne(parts: Buffer[]): Reply {
  const decoder = new ReplyDecoder()
  let reply: Reply = null
  for (const part of parts) decoder.push(part, (value) => (reply = value))
  return reply
}
