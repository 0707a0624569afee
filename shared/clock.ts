import { soon } from './soon.js'

/**
 * performance.now() read at most once per synchronous run of code: the
 * reading is kept until the microtask queue next runs, so every command of
 * one received chunk, or every reply of one backend read, shares one
 * reading, as Redis reads its clock once per event-loop pass for what it
 * runs in it. Deadlines and durations measured with it are exact to the
 * length of that run of code (microseconds; more only while the process is
 * busy with one large value), where a command otherwise asked the OS for
 * the time two or three times.
 *
 * For code that runs in the Node event loop. A reading lasts until the
 * microtask queue runs: past the I/O callback or timer it was taken in only
 * by the nextTick callbacks Node runs before microtasks (a resumed stream
 * can deliver several buffered chunks there). Readings never go back, so a
 * duration is never negative; a deadline is at most that run early.
 */
let reading = -1
const forget = (): void => {
  reading = -1
}

export function turnNow(): number {
  if (reading < 0) {
    reading = performance.now()
    soon(forget)
  }
  return reading
}
