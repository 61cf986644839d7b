/**
 * Where the daemon is, found the way the `gossip` CLI finds it (gossip/config.py
 * `default_home`, gossip/connection.py `ApiConnection`): the data dir is `$GOSSIP_HOME`, else
 * `~/Library/Application Support/sm-gossip` on macOS, else `$XDG_DATA_HOME/sm-gossip`
 * (default `~/.local/share/sm-gossip`); the API is its `api.sock`, or loopback TCP with
 * the bearer token kept in its `api.token`. Reads files only; no network.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const API_SOCKET = "api.sock";
export const TOKEN_FILE = "api.token";

function expand(path: string): string {
  if (path === "~") return homedir();
  if (path.startsWith("~/")) return join(homedir(), path.slice(2));
  return path;
}

/** The data dir of this user's daemon, as `gossip` computes it. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env,
                            platform: NodeJS.Platform = process.platform): string {
  const given = env.GOSSIP_HOME;
  if (given) return expand(given);
  if (platform === "darwin") return join(homedir(), "Library", "Application Support", "sm-gossip");
  const base = env.XDG_DATA_HOME || join(homedir(), ".local", "share");
  return join(base, "sm-gossip");
}

/** The token of the daemon's loopback TCP listener, or an Error saying why not. */
export function readToken(home: string): string | Error {
  const path = join(home, TOKEN_FILE);
  try {
    return readFileSync(path, "ascii").trim();
  } catch (e) {
    return new Error(`no API token: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
}
