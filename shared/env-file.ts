import { existsSync, readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'

/**
 * The environment on Node: `.env` from `cwd` when present, with variables
 * already in the environment winning, as with every dotenv convention. Kept
 * apart from config.ts, which the Worker imports too and which must not pull
 * in node:fs.
 */
export function readEnv(
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): Record<string, string | undefined> {
  const file = `${cwd}/.env`
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {}
  return { ...fromFile, ...env }
}
