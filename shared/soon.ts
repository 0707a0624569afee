const RESOLVED = Promise.resolve()

/**
 * Runs `task` from the microtask queue, as `queueMicrotask` does, without
 * what Node's `queueMicrotask` makes on every call for async_hooks: an
 * AsyncResource and a bound function. In a loop, 25-30 against 60-80 ns a
 * call; in a profile of forwarded `SET`s at pipeline 1, where `turnNow`
 * queues its reset once per request, that machinery was about 4% of the
 * sidecar's user time. A throw from `task` is an unhandled rejection, which
 * Node's default (`--unhandled-rejections=throw`) raises as an uncaught
 * exception, as it does a throw from a `queueMicrotask` callback; code that
 * rethrows a bug on purpose keeps `queueMicrotask`, whose report names the
 * error as thrown.
 */
export function soon(task: () => void): void {
  void RESOLVED.then(task)
}
