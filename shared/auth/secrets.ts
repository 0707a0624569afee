import { ConfigError } from '../config.js'
import { AclError, createUsers, type Users } from './acl.js'

/**
 * Authentication settings from the environment: a secret may come from its
 * variable or from the file its `*_FILE` twin names (container secrets), and
 * the ACL file from a path. Files come through a port, so the Worker, which
 * has no filesystem, passes none and this module never imports node:fs.
 */

/** Reads a whole file as UTF-8 text, or throws. Node's is in read-file-node.ts. */
export type ReadTextFile = (path: string) => string

/** The variables this module reads, for tooling that lists the proxy's settings. */
export const AUTH_CONFIG_NAMES: readonly string[] = Object.freeze([
  'PROXY_PASSWORD',
  'PROXY_PASSWORD_FILE',
  'PROXY_ACL_FILE',
  'PROXY_ACL',
])

type Env = Readonly<Record<string, string | undefined>>

/** An empty variable counts as unset, as compose's `${VAR:-}` leaves it. */
function setting(env: Env, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value === '' ? undefined : value
}

function readFileFor(name: string, path: string, readFile: ReadTextFile | undefined): string {
  const at = `Invalid ${name}=${JSON.stringify(path)}`
  if (readFile === undefined) throw new ConfigError(`${at}: this runtime has no filesystem`)
  try {
    return readFile(path)
  } catch (err) {
    // One line: start-up prints the message as it is.
    const reason = err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)
    throw new ConfigError(`${at}: cannot read it: ${reason}`)
  }
}

/**
 * The secret `name` from `env[name]` or from the file `env[name + '_FILE']`
 * names, with one trailing newline (LF or CRLF) of the file stripped; undefined
 * when neither is set. Messages name the variable and the path, never a secret.
 *
 * @throws ConfigError when both are set, or the file cannot be read or is empty.
 */
export function readSecret(
  env: Env,
  name: string,
  readFile: ReadTextFile | undefined,
): string | undefined {
  const fileName = `${name}_FILE`
  const value = setting(env, name)
  const path = setting(env, fileName)
  if (path === undefined) return value
  if (value !== undefined) {
    throw new ConfigError(
      `Invalid ${fileName}=${JSON.stringify(path)}: ${name} is set too; set one or the other`,
    )
  }
  const secret = readFileFor(fileName, path, readFile).replace(/\r?\n$/, '')
  if (secret === '')
    throw new ConfigError(`Invalid ${fileName}=${JSON.stringify(path)}: the file is empty`)
  return secret
}

export type AuthSettings = Readonly<{
  /** The default user's password (PROXY_PASSWORD or PROXY_PASSWORD_FILE). */
  password: string | undefined
  /**
   * The ACL text, the name its errors give it (the path, or `PROXY_ACL`) and
   * the variable it came from: PROXY_ACL_FILE, or PROXY_ACL, the same text
   * inline, for the Worker, which has no filesystem (a secret there).
   */
  aclFile: Readonly<{ text: string; source: string; variable: string }> | undefined
}>

/** @throws ConfigError as readSecret does, or when PROXY_ACL_FILE cannot be read. */
export function readAuthSettings(env: Env, readFile: ReadTextFile | undefined): AuthSettings {
  const password = readSecret(env, 'PROXY_PASSWORD', readFile)
  const path = setting(env, 'PROXY_ACL_FILE')
  const inline = setting(env, 'PROXY_ACL')
  if (path !== undefined && inline !== undefined) {
    // Never echo PROXY_ACL: it may hold passwords.
    throw new ConfigError(
      `Invalid PROXY_ACL_FILE=${JSON.stringify(path)}: PROXY_ACL is set too; set one or the other`,
    )
  }
  let aclFile: AuthSettings['aclFile']
  if (path !== undefined) {
    aclFile = {
      text: readFileFor('PROXY_ACL_FILE', path, readFile),
      source: path,
      variable: 'PROXY_ACL_FILE',
    }
  } else if (inline !== undefined) {
    aclFile = { text: inline, source: 'PROXY_ACL', variable: 'PROXY_ACL' }
  }
  return { password, aclFile }
}

/**
 * The users the environment describes, what start-up builds once: every
 * failure, a bad ACL line included, is one ConfigError naming the variable.
 */
export function loadUsers(env: Env, readFile: ReadTextFile | undefined): Users {
  const { password, aclFile } = readAuthSettings(env, readFile)
  try {
    return createUsers({ defaultPassword: password, aclFile })
  } catch (err) {
    if (err instanceof AclError) {
      throw new ConfigError(`Invalid ${aclFile?.variable ?? 'PROXY_ACL_FILE'}: ${err.message}`)
    }
    throw err
  }
}
