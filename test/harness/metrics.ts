/**
 * The value of one sample in a Prometheus text exposition, or undefined when
 * absent. `labels` must match the sample's label set exactly (order aside).
 */
export function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = (match[2] ?? '')
      .split(/,(?=[a-zA-Z_]+=")/)
      .filter((part) => part !== '')
      .sort()
      .join(',')
    if (have === wanted) return Number(match[3])
  }
  return undefined
}
