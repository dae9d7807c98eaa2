/**
 * `npm run torture` as a user runs it: `--help` prints the options and exits 0 without a
 * round, and an interrupted run (SIGINT, SIGTERM) removes its temporary data directory.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TORTURE = fileURLToPath(new URL('../bench/torture.js', import.meta.url));

/** The torture data directories in `dir`. */
const tortureDirs = (dir: string): string[] => fs.readdirSync(dir).filter((d) => d.startsWith('actor-raft-torture-'));

describe('npm run torture', function () {
  this.timeout(120_000);

  it('--help and -h print the options and exit 0 without starting a round', () => {
    for (const flag of ['--help', '-h']) {
      const r = spawnSync(process.execPath, [TORTURE, flag], { encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.contain('npm run torture -- [options]');
      expect(r.stdout).to.contain('--exactly-once');
      expect(r.stdout).not.to.contain('torture: ');
    }
    const bad = spawnSync(process.execPath, [TORTURE, '--secnds', '5'], { encoding: 'utf8' });
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.contain('unknown option --secnds');
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`removes its temporary data on ${signal}`, async () => {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-torture-spec-'));
      try {
        const child = spawn(process.execPath, [TORTURE, '--seconds', '60', '--round', '30', '--seed', '5'], {
          env: { ...process.env, TMPDIR: tmp },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let output = '';
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        // Wait for the first round's data directory, then interrupt the run.
        const deadline = Date.now() + 60_000;
        while (tortureDirs(tmp).length === 0 && child.exitCode === null && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(tortureDirs(tmp), output).to.have.length(1);
        child.kill(signal);
        const code = await exited;
        expect(code, output).to.equal(signal === 'SIGINT' ? 130 : 143);
        expect(tortureDirs(tmp), output).to.deep.equal([]);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
});
