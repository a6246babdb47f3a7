// The service end to end: a real `dmfr serve` process, real torchrun runs, live SSE through the
// SDK, restart from checkpoint after a rank is SIGKILLed, pause/resume, and reconciliation after
// the service itself is SIGKILLed and started again on the same data directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../ts/controller/launch.ts';
import { runPids } from '../../ts/controller/processes.ts';
import { Client, type LiveEvent } from '../../ts/sdk/client.ts';
import { Store as RunStore } from '../../ts/store/store.ts';
import { HAVE_PYTHON, waitFor } from './helpers.ts';

const root = mkdtempSync(path.join(tmpdir(), 'dmfr-svc-'));
const servers: ChildProcess[] = [];
const newDataDir = () => mkdtempSync(path.join(root, 'data-'));

/** Starts `dmfr serve` on a free port over `dataDir`; resolves with its base URL once it listens. */
function startServer(dataDir = newDataDir(), env: Record<string, string> = {}): Promise<{ proc: ChildProcess; url: string; dataDir: string }> {
  const proc = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/dmfr.js'), 'serve', '--port', '0', '--data-dir', dataDir, '--cpu-slots', '2'], {
    env: { ...process.env, DMFR_LOG_LEVEL: process.env.DMFR_TEST_SERVE_LOG ?? 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  servers.push(proc);
  return new Promise((resolve, reject) => {
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => {
      if (process.env.DMFR_TEST_SERVE_LOG) process.stderr.write(d);
      err += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(err);
      if (m) resolve({ proc, url: m[1]!, dataDir });
    });
    proc.on('exit', (code) => reject(new Error(`dmfr serve exited with ${code}: ${err}`)));
  });
}

/** `dmfr ARGS…` as a child process: what it has written to stderr so far, and its exit code. */
function dmfr(args: string[]) {
  const proc = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/dmfr.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  proc.stderr!.on('data', (d: Buffer) => (said += d.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  return { proc, said: () => said, exit };
}

// A small model so every run takes seconds; checkpoints every 10 steps for the restart tests.
const TINY = ['train.checkpoint_every=10', 'runtime.controller_timeout_s=5', 'runtime.stop_grace_s=3'];

function rankPid(runId: string, rank: number): number | undefined {
  return runPids(runId).find((pid) => {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      return env.includes(`RANK=${rank}`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dmfr.worker');
    } catch {
      return false;
    }
  });
}

/** Collects an experiment's live events in the background. */
function collect(client: Client, id: string) {
  const events: LiveEvent[] = [];
  const done = (async () => {
    for await (const e of client.events(id)) events.push(e);
  })().catch((err: Error) => err); // a server killed on purpose ends the stream with an error
  const states = () => events.filter((e) => e.kind === 'state').map((e) => String(e.data.to));
  const until = (cond: () => boolean, ms: number, what: string) => waitFor(cond, ms, what);
  return { events, done, states, until };
}

afterEach(() => {
  for (const s of servers.splice(0)) s.kill('SIGTERM');
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!HAVE_PYTHON)('dmfr serve end to end', () => {
  it('runs an experiment to completion with live metrics over SSE', async () => {
    const { url, dataDir } = await startServer();
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 30, set: TINY, name: 'sse' });
    expect(['QUEUED', 'STARTING']).toContain(exp.state); // placed at once when devices are free
    const live = collect(client, exp.id);
    await live.done;
    expect(live.states()).toEqual(['QUEUED', 'STARTING', 'RUNNING', 'STOPPING_COMPLETED', 'COMPLETED']);
    const steps = live.events.filter((e) => e.kind === 'metrics').map((e) => e.data.step);
    expect(steps).toEqual(Array.from({ length: 30 }, (_, i) => i + 1)); // steps completed, 1 … 30
    const ids = live.events.map((e) => e.id);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    const loss = await client.metrics(exp.id, { names: ['loss', 'terms.L_cls'] });
    expect(loss.loss).toHaveLength(30);
    // The store names the terms as the run store does; SSE nests them as the wire does.
    expect(loss['terms.L_cls']).toHaveLength(30);
    const metricEvents = live.events.filter((e) => e.kind === 'metrics');
    expect(metricEvents.every((e) => typeof (e.data.terms as Record<string, number>).L_cls === 'number')).toBe(true);
    const ckpts = await client.checkpoints(exp.id);
    // One step number: the final checkpoint is step 30 in the list, the events, the download
    // route and the file name.
    expect(ckpts.map((c) => c.step)).toContain(30);
    expect(live.events.filter((e) => e.kind === 'checkpoint').map((e) => e.data.step)).toContain(30);
    const dl = await fetch(`${url}/experiments/${exp.id}/checkpoints/30`);
    expect(dl.status).toBe(200);
    expect((await dl.arrayBuffer()).byteLength).toBe(ckpts.find((c) => c.step === 30)!.bytes);
    expect(dl.headers.get('content-disposition')).toContain(`${exp.id}-step-30.pt`);
    const runDir = path.join(dataDir, 'experiments', exp.id);
    expect(readdirSync(path.join(runDir, 'checkpoints'))).toContain('step-00000030.pt');
  });

  it('answers the dmfr exp client verbs', async () => {
    const { url } = await startServer();
    const exp = await new Client(url).createExperiment({ preset: 'quick', steps: 10, set: TINY, name: 'cli' });
    const cli = (...args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        const p = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/dmfr.js'), 'exp', ...args, '--server', url], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        p.once('exit', (code) => resolve({ code: code ?? 1, out, err }));
      });
    const logs = await cli('logs', exp.id, '--follow');
    expect(logs.code).toBe(0); // COMPLETED
    expect(logs.out).toMatch(/state STOPPING_COMPLETED → COMPLETED/);
    expect(logs.out).toMatch(/step 10 loss/); // the last of 10 steps, counted as steps completed
    const list = await cli('list', '--json');
    expect(JSON.parse(list.out).map((e: { id: string }) => e.id)).toEqual([exp.id]);
    const get = await cli('get', exp.id, '--json');
    expect(JSON.parse(get.out)).toMatchObject({ id: exp.id, state: 'COMPLETED' });
    const missing = await cli('get', 'nope-1');
    expect(missing.code).toBe(4);
    expect(missing.err).toContain('404 not_found');
    const illegal = await cli('pause', exp.id);
    expect(illegal.code).toBe(1);
    expect(illegal.err).toContain('409 illegal_transition');
  });

  it('shuts down gracefully on SIGTERM: ranks checkpoint and exit, and the run resumes after', async () => {
    const first = await startServer();
    const exp = await new Client(first.url).createExperiment({ preset: 'quick', steps: 2000, set: TINY, name: 'sigterm' });
    const live1 = collect(new Client(first.url), exp.id);
    await live1.until(() => live1.events.filter((e) => e.kind === 'metrics').length >= 5, 120_000, 'training');
    const exited = new Promise<number | null>((r) => first.proc.once('exit', (code) => r(code)));
    first.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(runPids(`${exp.id}-a1`)).toEqual([]); // no rank outlives the service
    const lastSeen = Math.max(...live1.events.filter((e) => e.kind === 'metrics').map((e) => Number(e.data.step)));
    const second = await startServer(first.dataDir);
    const client = new Client(second.url);
    // Ranks finished the steps already planned, then wrote the shutdown checkpoint.
    const saved = (await client.checkpoints(exp.id)).at(-1)!.step;
    expect(saved).toBeGreaterThanOrEqual(lastSeen);
    const live = collect(client, exp.id);
    const restarting = () => live.events.find((e) => e.kind === 'state' && e.data.to === 'RESTARTING');
    await live.until(() => live.events.some((e) => e.kind === 'metrics' && e.id > (restarting()?.id ?? Infinity)), 120_000, 'resumed steps');
    expect(restarting()!.data.cause).toBe('service restarted');
    const resumed = live.events.find((e) => e.kind === 'metrics' && e.id > restarting()!.id)!;
    expect(Number(resumed.data.step)).toBe(saved + 1);
    await client.stop(exp.id);
    await live.done;
  });

  it('restarts from the latest checkpoint after a rank is SIGKILLed', async () => {
    const { url } = await startServer();
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 2000, set: TINY, max_restarts: 1, name: 'rank-kill' });
    const live = collect(client, exp.id);
    await live.until(() => live.events.some((e) => e.kind === 'checkpoint'), 120_000, 'a checkpoint');
    const pid = rankPid(`${exp.id}-a1`, 1);
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    await live.until(() => live.states().filter((s) => s === 'RUNNING').length === 2, 120_000, 'the second RUNNING');
    const restarting = live.events.find((e) => e.kind === 'state' && e.data.to === 'RESTARTING')!;
    expect(String(restarting.data.cause)).toMatch(/rank 1/);
    // The second attempt resumes: its first metrics step is past 0.
    const after = live.events.filter((e) => e.id > restarting.id && e.kind === 'metrics');
    await live.until(() => live.events.some((e) => e.id > restarting.id && e.kind === 'metrics'), 60_000, 'metrics after the restart');
    expect(Number((after[0] ?? live.events.find((e) => e.id > restarting.id && e.kind === 'metrics')!).data.step)).toBeGreaterThan(0);
    expect((await client.getExperiment(exp.id)).restarts).toBe(1);
    await client.stop(exp.id);
    await live.done;
    expect(live.states().at(-1)).toBe('CANCELED');
  });

  it('pauses with a checkpoint, releases the devices and resumes from it', async () => {
    const { url } = await startServer();
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 2000, set: TINY, name: 'pause' });
    const live = collect(client, exp.id);
    await live.until(() => live.events.filter((e) => e.kind === 'metrics').length >= 5, 120_000, 'training');
    await client.pause(exp.id);
    await live.until(() => live.states().includes('PAUSED'), 120_000, 'PAUSED');
    const paused = await client.getExperiment(exp.id);
    expect(paused.devices).toBeNull();
    const lastStep = Math.max(...live.events.filter((e) => e.kind === 'metrics').map((e) => Number(e.data.step)));
    const ckpt = (await client.checkpoints(exp.id)).at(-1)!;
    expect(ckpt.step).toBe(lastStep);
    await client.resume(exp.id);
    await live.until(() => live.states().filter((s) => s === 'RUNNING').length === 2, 120_000, 'RUNNING again');
    await live.until(() => live.events.filter((e) => e.kind === 'metrics').some((e) => Number(e.data.step) > lastStep), 60_000, 'resumed steps');
    const resumedSteps = live.events.filter((e) => e.kind === 'metrics').map((e) => Number(e.data.step));
    expect(resumedSteps.filter((s) => s === lastStep + 1).length).toBe(1); // continues where it paused
    await client.stop(exp.id);
    await live.done;
    expect(live.states()).toEqual(['QUEUED', 'STARTING', 'RUNNING', 'PAUSING', 'PAUSED', 'RESUMING', 'STARTING', 'RUNNING', 'STOPPING_CANCELED', 'CANCELED']);
  });

  it('books only node 0\'s ranks for a two-node experiment and announces the join command', async () => {
    const { url } = await startServer(); // 2 CPU slots
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 20, nproc: 2, set: [...TINY, 'runtime.nnodes=2'], name: 'two-nodes' });
    const live = collect(client, exp.id);
    await live.until(() => live.events.some((e) => e.kind === 'log' && e.data.join_file), 120_000, 'the join announcement');
    const announced = live.events.find((e) => e.kind === 'log')!;
    expect(announced.data.message).toMatch(/waiting for 1 more node\(s\) \(runtime\.startup_timeout_s = 120 s\); on node K \(1 … 1\) run: dmfr join .*join\.json --node-rank K /);
    expect(announced.data.message).toContain(`dmfr join --experiment ${exp.id} --server <this service> --node-rank K`);
    expect((await client.getExperiment(exp.id)).devices).toHaveLength(1); // one rank per node: one slot here
    const info = await client.joinInfo(exp.id); // what `dmfr join --experiment` uses
    expect(info).toMatchObject({ run_id: `${exp.id}-a1`, nnodes: 2, nproc_per_node: 1 });
    const node1 = dmfr(['join', String(announced.data.join_file), '--node-rank', '1']);
    // The other slot stays free: a one-rank experiment runs to completion beside it.
    const other = await client.createExperiment({ preset: 'quick', steps: 5, nproc: 1, set: TINY, name: 'alongside' });
    const otherLive = collect(client, other.id);
    await otherLive.done;
    expect(otherLive.states().at(-1)).toBe('COMPLETED');
    await expect(client.joinInfo(other.id)).rejects.toMatchObject({ status: 409, code: 'not_joinable' });
    // an agent for an experiment that does not exist says so and exits 4, as `dmfr exp` does
    const lost = dmfr(['join', '--experiment', 'exp-nope', '--server', url, '--node-rank', '1']);
    expect(await lost.exit).toBe(4);
    expect(lost.said()).toContain('experiment exp-nope: 404 not_found: experiment exp-nope does not exist');
    await live.done;
    expect(live.states().at(-1)).toBe('COMPLETED');
    expect(live.events.filter((e) => e.kind === 'metrics').map((e) => e.data.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1)); // steps completed, 1 … 20
    expect(await node1.exit).toBe(0);
  });

  it('dmfr join --experiment joins every attempt of a two-node experiment, across a restart', async () => {
    const { url } = await startServer();
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 2000, nproc: 2, set: [...TINY, 'runtime.nnodes=2'], name: 'agent' });
    const live = collect(client, exp.id);
    const logDir = mkdtempSync(path.join(root, 'agent-'));
    const agent = dmfr(['join', '--experiment', exp.id, '--server', url, '--node-rank', '1', '--log-dir', logDir]);
    await live.until(() => live.events.some((e) => e.kind === 'checkpoint'), 120_000, 'a checkpoint of the first attempt');
    // Rank 0, on the service's host, dies: the service restarts from the checkpoint and the agent joins the new attempt.
    process.kill(rankPid(`${exp.id}-a1`, 0)!, 'SIGKILL');
    await live.until(() => live.states().filter((s) => s === 'RUNNING').length === 2, 180_000, 'RUNNING again');
    const restartedAt = live.events.filter((e) => e.kind === 'state').findIndex((e) => e.data.to === 'RESTARTING');
    expect(restartedAt).toBeGreaterThan(0);
    const stepsSeen = () => live.events.filter((e) => e.kind === 'metrics').length;
    const before = stepsSeen();
    await live.until(() => stepsSeen() >= before + 5, 120_000, 'steps of the second attempt');
    expect(agent.said()).toContain(`node 1/2 of run ${exp.id}-a1`);
    expect(agent.said()).toContain(`run ${exp.id}-a1 ended on this node`);
    expect(agent.said()).toContain(`node 1/2 of run ${exp.id}-a2`);
    await client.stop(exp.id);
    await live.done;
    expect(live.states().at(-1)).toBe('CANCELED');
    expect(await agent.exit).toBe(0);
    expect(agent.said()).toContain(`experiment ${exp.id} ended CANCELED`);
  }, 400_000);

  it('a join agent stopped by SIGTERM stops its node\'s ranks and exits 143', async () => {
    const { url } = await startServer();
    const client = new Client(url);
    const exp = await client.createExperiment({ preset: 'quick', steps: 2000, nproc: 2, set: [...TINY, 'runtime.nnodes=2'], name: 'agent-term' });
    const live = collect(client, exp.id);
    const agent = dmfr(['join', '--experiment', exp.id, '--server', url, '--node-rank', '1']);
    await live.until(() => live.events.filter((e) => e.kind === 'metrics').length >= 3, 120_000, 'steps on both nodes');
    const node1Rank = rankPid(`${exp.id}-a1`, 1)!;
    agent.proc.kill('SIGTERM');
    expect(await agent.exit).toBe(143);
    expect(agent.said()).toContain(`leaving run ${exp.id}-a1: SIGTERM`);
    await waitFor(() => !runPids(`${exp.id}-a1`).includes(node1Rank), 30_000, "node 1's rank to exit");
    await client.stop(exp.id);
    await live.done;
  }, 300_000);

  it('reconciles the store when the service is SIGKILLed and started again', async () => {
    // With a token (from DMFR_TOKEN), which no rank may inherit (issue #12, item 4).
    const TOKEN = 'E2E-SERVICE-TOKEN';
    const first = await startServer(undefined, { DMFR_TOKEN: TOKEN });
    const exp = await new Client(first.url, { token: TOKEN }).createExperiment({ preset: 'quick', steps: 2000, set: TINY, name: 'service-kill' });
    const live1 = collect(new Client(first.url, { token: TOKEN }), exp.id);
    await live1.until(() => live1.events.some((e) => e.kind === 'checkpoint'), 120_000, 'a checkpoint');
    const rank0 = rankPid(`${exp.id}-a1`, 0);
    expect(rank0).toBeDefined();
    const rankEnv = readFileSync(`/proc/${rank0}/environ`, 'utf8').split('\0');
    expect(rankEnv.some((v) => v.startsWith('DMFR_RUN_ID='))).toBe(true); // it is the rank's environment…
    expect(rankEnv.filter((v) => v.startsWith('DMFR_TOKEN='))).toEqual([]); // …without the token
    first.proc.kill('SIGKILL');
    // Ranks notice their controller is gone (runtime.controller_timeout_s = 5) and exit.
    await waitFor(() => runPids(`${exp.id}-a1`).length === 0, 30_000, 'the orphaned ranks to exit');
    const second = await startServer(first.dataDir, { DMFR_TOKEN: TOKEN });
    const client = new Client(second.url, { token: TOKEN });
    const live = collect(client, exp.id);
    await live.until(() => live.states().filter((s) => s === 'RUNNING').length >= 2, 120_000, 'RUNNING after reconciliation');
    const restarting = live.events.find((e) => e.kind === 'state' && e.data.to === 'RESTARTING');
    expect(restarting?.data.cause).toBe('service restarted');
    await client.stop(exp.id);
    await live.done;
    expect(live.states().at(-1)).toBe('CANCELED');
    // The per-run store: the killed attempt's run row is settled, not left `running` (item 9).
    const runs = new RunStore(path.join(first.dataDir, 'experiments', exp.id, 'dmfr.sqlite'));
    try {
      const killed = runs.getRun(`${exp.id}-a1`)!;
      expect(killed).toMatchObject({ state: 'failed', cause: 'service restarted: the attempt lost its controller' });
      expect(killed.ended_at).not.toBeNull();
      expect(runs.getRun(`${exp.id}-a2`)!.state).toBe('canceled');
    } finally {
      runs.close();
    }
  }, 600_000);
});
