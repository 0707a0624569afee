import { BackendTimeoutError } from '../errors.js'

/**
 * Milliseconds left until `deadline` (a performance.now() reading). A read
 * whose deadline has already passed fails here, before any I/O: its caller
 * has given up, and a request sent now would only load the backend.
 */
export function timeLeft(deadline: number): number {
  const left = deadline - performance.now()
  if (!(left > 0)) throw new BackendTimeoutError('the read was due before it reached the backend')
  return left
}

/**
 * `work`, or a BackendTimeoutError once `deadline` passes, whichever comes
 * first. `work` is not cancelled (the caller closes or aborts what it can);
 * its later outcome is absorbed, so a late rejection is never unhandled.
 */
export function untilDeadline<T>(work: Promise<T>, deadline: number): Promise<T> {
  const ms = timeLeft(deadline)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new BackendTimeoutError(`no reply within ${Math.ceil(ms)} ms (the read's deadline)`),
        ),
      Math.ceil(ms),
    )
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err)
      },
    )
  })
}
