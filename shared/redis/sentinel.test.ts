import { afterEach, describe, expect, it } from 'vitest'
import { freePort } from '../../test/harness/ports.js'
import { type ScriptedSentinel, startScriptedSentinel, until } from '../../test/harness/sentinel.js'
import { silentLogger } from '../log.js'
import { SentinelResolver, type SentinelResolverOptions } from './sentinel.js'
import type { Address } from './source.js'

const A = { host: '10.0.0.1', port: 6379 }
const B = { host: '10.0.0.2', port: 6380 }

const opened: { close(): Promise<void> }[] = []

afterEach(async () => {
  await Promise.all(opened.splice(0).map((thing) => thing.close()))
})

async function sentinel(options: { password?: string; username?: string } = {}) {
  const scripted = await startScriptedSentinel(options)
  opened.push(scripted)
  return scripted
}

function at(scripted: ScriptedSentinel): Address {
  return { host: '127.0.0.1', port: scripted.port }
}

/** A resolver over `sentinels`, recording every switch it reports. */
function resolver(
  sentinels: Address[],
  options: Partial<SentinelResolverOptions> = {},
): { resolver: SentinelResolver; switches: [Address, Address | undefined][] } {
  const switches: [Address, Address | undefined][] = []
  const created = new SentinelResolver({
    sentinels,
    masterName: 'mymaster',
    timeoutMs: 500,
    // Long unless a test is about the refresh: nothing else may explain what it sees.
    refreshMs: 60_000,
    log: silentLogger,
    onSwitch: (primary, previous) => switches.push([primary, previous]),
    ...options,
  })
  opened.push(created)
  return { resolver: created, switches }
}

describe('SentinelResolver', () => {
  it('asks the sentinels in order past one that is down or does not know the name, then the one that answered first', async () => {
    const down = { host: '127.0.0.1', port: await freePort() }
    const unaware = await sentinel()
    const knowing = await sentinel()
    knowing.name('mymaster', A)
    const { resolver: r, switches } = resolver([down, at(unaware), at(knowing)])
    await until(() => r.primary() !== undefined, 'a primary')
    expect(r.primary()).toEqual(A)
    expect(switches).toEqual([[A, undefined]])
    expect(unaware.asked()).toBeGreaterThanOrEqual(1)

    const before = unaware.asked()
    const knowingBefore = knowing.asked()
    r.check()
    await until(() => knowing.asked() > knowingBefore, 'the knowing sentinel to be asked again')
    expect(unaware.asked()).toBe(before)
    // Asked again, the same answer is no switch.
    expect(switches).toHaveLength(1)
  })

  it('has no primary while no sentinel knows the name, and keeps asking until one does', async () => {
    const scripted = await sentinel()
    const { resolver: r, switches } = resolver([at(scripted)])
    await until(() => scripted.asked() >= 3, 'the sentinel to be asked again and again')
    expect(r.primary()).toBeUndefined()
    scripted.name('mymaster', B)
    await until(() => r.primary() !== undefined, 'a primary')
    expect(switches).toEqual([[B, undefined]])
  })

  it("authenticates with the sentinels' own credentials", async () => {
    const guarded = await sentinel({ username: 'watcher', password: 'sp ace' })
    guarded.name('mymaster', A)
    const refused = resolver([at(guarded)])
    const { resolver: r } = resolver([at(guarded)], { username: 'watcher', password: 'sp ace' })
    await until(() => r.primary() !== undefined, 'a primary')
    expect(guarded.received()).toContainEqual(['AUTH', 'watcher', 'sp ace'])
    expect(refused.resolver.primary()).toBeUndefined()
  })

  it('follows +switch-master for its own name and ignores other names', async () => {
    const scripted = await sentinel()
    scripted.name('mymaster', A)
    const { resolver: r, switches } = resolver([at(scripted)])
    await until(() => r.primary() !== undefined && scripted.subscribers() === 1, 'subscribed')
    scripted.announce('othermaster 10.0.0.1 6379 10.9.9.9 1')
    scripted.announce('mymaster 10.0.0.1 6379 10.0.0.2 6380')
    await until(() => switches.length === 2, 'the switch')
    expect(switches[1]).toEqual([B, A])
    expect(r.primary()).toEqual(B)
  })

  it('catches a switch it was never told of by asking again every refreshMs', async () => {
    const scripted = await sentinel()
    scripted.name('mymaster', A)
    const { resolver: r } = resolver([at(scripted)], { refreshMs: 100 })
    await until(() => r.primary() !== undefined, 'a primary')
    // Moved without a message (one lost while no subscription was up).
    scripted.name('mymaster', B)
    await until(() => r.primary()?.port === B.port, 'the refresh to find the new primary')
  })

  it('moves its subscription to the next sentinel when one dies, and asks for what it missed meanwhile', async () => {
    const first = await sentinel()
    const second = await sentinel()
    first.name('mymaster', A)
    second.name('mymaster', A)
    const { resolver: r, switches } = resolver([at(first), at(second)])
    await until(() => r.primary() !== undefined && first.subscribers() === 1, 'subscribed')
    second.name('mymaster', B)
    await first.close()
    await until(() => second.subscribers() === 1, 'the subscription to move')
    await until(() => r.primary()?.port === B.port, 'the missed switch to be found')
    expect(switches.at(-1)).toEqual([B, A])
  })

  it('replaces a subscription whose sentinel stops answering PING', async () => {
    const hung = await sentinel()
    const healthy = await sentinel()
    hung.name('mymaster', A)
    healthy.name('mymaster', A)
    const { resolver: r } = resolver([at(hung), at(healthy)], { refreshMs: 100 })
    await until(() => r.primary() !== undefined && hung.subscribers() === 1, 'subscribed')
    hung.silence()
    await until(() => healthy.subscribers() === 1, 'the subscription to move')
    expect(hung.received()).toContainEqual(['PING'])
  })

  it('asks the sentinels the listed ones know of once every listed one fails', async () => {
    const listed = await sentinel()
    const discovered = await sentinel()
    listed.name('mymaster', A)
    listed.peers([discovered.port])
    discovered.name('mymaster', B)
    const { resolver: r } = resolver([at(listed)])
    await until(() => r.primary() !== undefined, 'a primary')
    expect(r.primary()).toEqual(A)
    expect(discovered.asked()).toBe(0)
    await listed.close()
    r.check()
    await until(() => r.primary()?.port === B.port, 'the discovered sentinel to be asked')
  })

  it('keeps the primary it knows while no sentinel can be reached', async () => {
    const scripted = await sentinel()
    scripted.name('mymaster', A)
    const { resolver: r, switches } = resolver([at(scripted)])
    await until(() => r.primary() !== undefined, 'a primary')
    await scripted.close()
    r.check()
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(r.primary()).toEqual(A)
    expect(switches).toHaveLength(1)
  })

  it('asks once more for any number of checks asked while it is asking', async () => {
    const scripted = await sentinel()
    scripted.name('mymaster', A)
    const { resolver: r } = resolver([at(scripted)])
    await until(() => r.primary() !== undefined, 'a primary')
    // The subscription's own check may still be running or just done.
    await new Promise((resolve) => setTimeout(resolve, 50))
    const before = scripted.asked()
    for (let i = 0; i < 10; i++) r.check()
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(scripted.asked() - before).toBe(2)
  })
})
