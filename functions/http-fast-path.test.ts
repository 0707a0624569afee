import { describe, expect, it } from 'vitest'
import { parseKeyRequest } from './http-fast-path.js'

/** The head of `text` (up to its blank line), parsed as the fast path does. */
function parse(text: string) {
  const bytes = Buffer.from(`..${text}`, 'latin1')
  return parseKeyRequest(bytes, 2, bytes.indexOf('\r\n\r\n'))
}

describe('parseKeyRequest', () => {
  it('reads the method, target, Authorization and Connection: close of a plain key request', () => {
    expect(
      parse(
        'HEAD /get/a:b HTTP/1.1\r\nhOsT:  x:8080 \r\nAUTHORIZATION: Basic eDp5\r\nConnection: Close\r\n\r\n',
      ),
    ).toEqual({ method: 'HEAD', target: '/get/a:b', authorization: 'Basic eDp5', close: true })
    expect(parse('GET /get/k HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n')).toEqual({
      method: 'GET',
      target: '/get/k',
      authorization: undefined,
      close: false,
    })
  })

  it('leaves to node:http anything but a plain GET or HEAD of a key over HTTP/1.1 with one plain Host', () => {
    for (const head of [
      'GET /get/k HTTP/1.0\r\nHost: x\r\n\r\n',
      'GET /get/k HTTP/1.1\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n',
      'PUT /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /get/a%20b HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\n X-Folded: 1\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n',
      'GET /get/k HTTP/1.1\nHost: x\r\n\r\n',
      'GET /get/k  HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n'.replace(
        'Host: x',
        `Host: x\r\n${'X: 1\r\n'.repeat(100)}`,
      ),
    ]) {
      expect(parse(head), JSON.stringify(head)).toBeNull()
    }
  })
})
