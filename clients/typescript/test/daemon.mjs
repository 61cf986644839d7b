// Real `gossip serve` processes for the tests (as tests/daemons.py): a temporary data dir,
// loopback only, no mDNS, no agents' port; started, waited for, stopped by pid. Every
// daemon a test starts is stopped in its `after`, even when the test fails.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The Python that runs `gossip`: $GOSSIP_PYTHON (scripts/test sets it), else the repo's .venv. */
export function python() {
  if (process.env.GOSSIP_PYTHON) return process.env.GOSSIP_PYTHON;
  const venv = join(ROOT, ".venv", "bin", "python");
  if (existsSync(venv)) return venv;
  throw new Error("no Python for `gossip serve`: set GOSSIP_PYTHON or run scripts/test");
}

const env = (home) => ({ ...process.env, GOSSIP_HOME: home, PYTHONPATH: ROOT });

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** A fresh directory that `after` removes. */
export function scratch() {
  return mkdtempSync(join(tmpdir(), "sm-gossip-ts-"));
}

export class Daemon {
  /** A new host (`gossip init`) in `dir`/`name`. */
  static create(dir, name, { apiTcp = false } = {}) {
    const home = join(dir, name);
    const out = spawnSync(python(), ["-m", "gossip.cli", "init", "--name", name],
                          { env: env(home), cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    if (out.status !== 0) throw new Error(`gossip init failed: ${out.stderr}`);
    return new Daemon(home, apiTcp);
  }

  constructor(home, apiTcp) {
    this.home = home;
    this.apiTcp = apiTcp;
    this.proc = null;
    this.tcp = null;
    this.log = `${home}.log`;
  }

  async start() {
    this.port ??= await freePort();
    const args = ["-m", "gossip.cli", "serve", "--home", this.home, "--listen",
                  `127.0.0.1:${this.port}`, "--profile", "local", "--no-mdns", "--agents-listen", ""];
    if (this.apiTcp) {
      this.tcp ??= `127.0.0.1:${await freePort()}`;
      args.push("--api-listen", this.tcp);
    }
    const log = openSync(this.log, "a");
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      throw new Error(`${this.home}: a daemon runs already`);
    }
    this.proc = spawn(python(), args, { env: env(this.home), cwd: ROOT, stdio: ["ignore", log, log] });
    const exited = new Promise((ok) => this.proc.once("exit", ok));
    this.exited = exited;
    const deadline = Date.now() + 30_000;
    while (!(await this.answers())) {
      if (this.proc.exitCode !== null) throw new Error(`gossip serve exited; see ${this.log}`);
      if (Date.now() > deadline) throw new Error(`gossip serve did not answer in 30 s; see ${this.log}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
    return this;
  }

  answers() {
    return new Promise((ok) => {
      const req = request({ socketPath: join(this.home, "api.sock"), path: "/v1/peers",
                            headers: { Host: "localhost" }, agent: false, timeout: 2000 },
                          (res) => { res.resume(); ok(res.statusCode === 200); });
      req.on("error", () => ok(false));
      req.on("timeout", () => { req.destroy(); ok(false); });
      req.end();
    });
  }

  /** Stop it (SIGTERM: it removes api.sock; SIGKILL leaves the socket file behind). */
  async stop(signal = "SIGTERM") {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }
}

export function cleanup(dir, ...daemons) {
  return async () => {
    for (const d of daemons) await d.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Log lines a client wrote, for counting. */
export function recorder() {
  const lines = [];
  const log = (level, message) => lines.push({ level, message });
  return { lines, log, warnings: () => lines.filter((l) => l.level === "warn").map((l) => l.message) };
}

export async function until(condition, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}
