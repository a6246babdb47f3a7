// Two "nodes" on loopback: the controller starts node 0's torchrun, `dmfr join` starts node 1's
// from the join file; the four ranks form one DDP group fed by the controller's plans.
import { spawn } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../ts/config/load.ts';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { RunController, type MetricsEvent, type RankInfo } from '../../ts/controller/index.ts';
import { readJoinInfo, writeJoinInfo, type JoinInfo } from '../../ts/controller/nodes.ts';
import { HAVE_PYTHON } from './helpers.ts';

describe.skipIf(!HAVE_PYTHON)('multi-node (two torchrun processes on loopback)', () => {
  it('trains one run over two nodes joined with dmfr join, CURVE-encrypted', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dmfr-nodes-')), 'run');
    const config = loadConfig({ preset: 'quick', steps: 20, nproc: 4, sets: ['runtime.nnodes=2', 'runtime.threads_per_rank=1', 'runtime.curve=true'] });
    const controller = new RunController({ config, outDir: out });
    const hellos: RankInfo[] = [];
    const steps: number[] = [];
    controller.on('hello', (r: RankInfo) => hellos.push(r));
    controller.on('metrics', (m: MetricsEvent) => steps.push(m.step));
    let joined: Promise<number> | null = null;
    controller.on('join', (file: string) => {
      expect(statSync(file).mode & 0o777).toBe(0o600); // it holds the run's key
      const info = readJoinInfo(file);
      expect(info).toMatchObject({ nnodes: 2, nproc_per_node: 2, master_addr: '127.0.0.1' });
      expect(info.curve_server_key).toHaveLength(40); // node 1's ranks encrypt too
      const node1 = spawn(process.execPath, [join(REPO_ROOT, 'bin/dmfr.js'), 'join', file, '--node-rank', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      node1.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      joined = new Promise((resolve) => node1.once('exit', (code) => (code !== 0 && process.stderr.write(err), resolve(code ?? 1))));
    });
    const summary = await controller.start();
    expect(summary.status, summary.cause ?? '').toBe('completed');
    expect(steps).toEqual(Array.from({ length: 20 }, (_, i) => i + 1)); // steps completed
    expect(hellos.map((h) => h.rank).sort()).toEqual([0, 1, 2, 3]);
    expect(await joined).toBe(0);
  });

  it('rejects a join file that is not one and a node rank out of range', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmfr-join-'));
    const run = (args: string[]) =>
      new Promise<{ code: number; err: string }>((resolve) => {
        const p = spawn(process.execPath, [join(REPO_ROOT, 'bin/dmfr.js'), 'join', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        p.once('exit', (code) => resolve({ code: code ?? 1, err }));
      });
    const missing = await run([join(dir, 'nope.json'), '--node-rank', '1']);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('cannot read the join file');
    const file = join(dir, 'join.json');
    const info = { version: 1, run_id: 'r-x', control: 'tcp://127.0.0.1:1', events: 'tcp://127.0.0.1:2', key: 'ab'.repeat(32), nnodes: 2,
      nproc_per_node: 1, master_addr: '127.0.0.1', master_port: 29500, device: 'cpu', threads_per_rank: 1, curve_server_key: null };
    writeJoinInfo(file, info as JoinInfo);
    const outOfRange = await run([file, '--node-rank', '2']);
    expect(outOfRange.code).toBe(2);
    expect(outOfRange.err).toContain('--node-rank: expected 1 … 1');
    writeJoinInfo(file, { ...info, key: 'short' } as JoinInfo);
    const badKey = await run([file, '--node-rank', '1']);
    expect(badKey.code).toBe(2);
    expect(badKey.err).toMatch(/join\.json: \/key: /);
  });
});
