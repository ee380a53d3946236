// Starts the wa-sim binary on loopback and talks to its control API.
//
// The binary is `$WA_SIM_BIN`, or `wa-sim` in `$CARGO_TARGET_DIR/debug` (default: the
// workspace's `target/debug`); `.ci/conformance` builds it first.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const workspace = path.resolve(here, '..', '..', '..');

export function simBinary() {
  if (process.env.WA_SIM_BIN) return process.env.WA_SIM_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(workspace, 'target');
  return path.join(target, 'debug', 'wa-sim');
}

export class ControlError extends Error {
  constructor(status, body) {
    super(`wa-sim control API answered ${status}: ${body}`);
    this.status = status;
  }
}

export class Sim {
  constructor(child, info) {
    this.child = child;
    this.wsUrl = info.ws_url;
    this.controlUrl = info.control_url;
    this.rootPublicKey = Buffer.from(info.root_public_key, 'hex');
  }

  static async start() {
    const bin = simBinary();
    if (!existsSync(bin)) {
      throw new Error(`no wa-sim binary at ${bin}: build it (cargo build -p wa-sim) or set WA_SIM_BIN`);
    }
    const child = spawn(bin, ['--listen', '127.0.0.1:0', '--control', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('wa-sim did not start within 20 s')), 20_000);
      child.once('exit', (code) => reject(new Error(`wa-sim exited with ${code}`)));
      createInterface({ input: child.stdout }).once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
    return new Sim(child, JSON.parse(line));
  }

  stop() {
    this.child.kill('SIGTERM');
  }

  async call(method, route, body) {
    const response = await fetch(this.controlUrl + route, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new ControlError(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  createAccount(account) {
    return this.call('POST', '/accounts', account);
  }

  account(phone) {
    return this.call('GET', `/accounts/${phone}`);
  }

  group(jid) {
    return this.call('GET', `/groups/${jid}`);
  }

  createGroup(group) {
    return this.call('POST', '/groups', group);
  }

  /** Another account acts on a group from its phone. */
  groupAction(jid, action) {
    return this.call('POST', `/groups/${jid}/actions`, action);
  }

  phoneBlocklist(phone, action, jid) {
    return this.call('POST', `/accounts/${phone}/blocklist`, { action, jid });
  }

  stats() {
    return this.call('GET', '/stats');
  }

  resetStats() {
    return this.call('DELETE', '/stats');
  }
}

/** Counts of IQs of a namespace and type in a stats snapshot. */
export function iqCount(stats, xmlns, type) {
  return stats.iq[`${xmlns}:${type}`] ?? 0;
}
