// Owns every experiment's lifecycle: queue → devices → launch → follow → settle, with restarts
// from the latest checkpoint (up to max_restarts) when a run fails, pause/resume/restart on
// request, and reconciliation of the store when the service itself restarts.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { Store as RunStore, TERMINAL_STATES } from '../store/store.ts';
import type { EventBus } from './bus.ts';
import type { ExperimentRow, ServiceStore } from './db.ts';
import { ApiError, conflict, notFound } from './errors.ts';
import type { LaunchedRun, Launcher, RunOutcome } from './launcher.ts';
import { DeviceScheduler, deviceEnv, type Placement } from './scheduler.ts';
import { ACTIVE, canTransition, type State } from './states.ts';

export interface CheckpointPolicy {
  keep_latest: number;
  keep_best: number;
  metric: string | null;
  smaller_is_better: boolean;
}

export interface CreateRequest {
  id: string;
  name: string;
  config: Record<string, unknown>;
  nproc: number;
  priority: number;
  maxRestarts: number;
  checkpointPolicy: CheckpointPolicy | null;
  /** The run directory; default experiments/<id>. A study's cell trains in the study's
   *  cells/<hash>/ (ts/service/studies.ts), so the study directory has a local study's layout. */
  runDir?: string;
}

export class Supervisor {
  private readonly live = new Map<string, LaunchedRun>();
  /** runtime.nnodes > 1: the join file of each experiment's live attempt (GET …/join). */
  private readonly joinFiles = new Map<string, string>();
  private readonly settled = new Map<string, Promise<void>>();
  private shuttingDown = false;

  constructor(
    private readonly store: ServiceStore,
    private readonly bus: EventBus,
    private readonly scheduler: DeviceScheduler,
    private readonly launcher: Launcher,
    readonly dataDir: string,
    private readonly log: Logger,
  ) {}

  runDir(id: string): string {
    return path.join(this.dataDir, 'experiments', id);
  }

  private get(id: string): ExperimentRow {
    const row = this.store.getExperiment(id);
    if (!row) throw notFound('experiment', id);
    return row;
  }

  private move(id: string, from: State, to: State, fields: Parameters<ServiceStore['transition']>[3] = {}): void {
    this.bus.publish(this.store.transition(id, from, to, fields));
    this.log.info({ experiment: id, from, to, cause: fields.cause }, 'state');
  }

  private require(row: ExperimentRow, to: State, action: string): void {
    if (!canTransition(row.state, to)) throw conflict(`cannot ${action} experiment ${row.id} in state ${row.state}`, row.state);
  }

  /** Queue a run for the devices of this host: with runtime.nnodes > 1 only node 0's share of
   *  the ranks runs here (docs/multinode.md); the other nodes join with `dmfr join`. */
  private enqueue(row: ExperimentRow): void {
    this.scheduler.enqueue(row.id, localRanks(row), row.priority);
  }

  /** Why no device set of this host can ever hold the experiment's ranks, or null when it fits. */
  misfit(row: Pick<ExperimentRow, 'nproc' | 'config'>): string | null {
    const ranks = localRanks(row);
    if (ranks <= this.scheduler.capacity) return null;
    const nnodes = (row.config as { runtime?: { nnodes?: number } }).runtime?.nnodes ?? 1;
    const asks = nnodes > 1 ? `${row.nproc} / runtime.nnodes ${nnodes} = ${ranks} ranks on this host` : `${ranks} ranks`;
    const how = this.scheduler.kind === 'cpu' ? 'dmfr serve --cpu-slots' : 'visible CUDA devices';
    return `train.nproc: asks for ${asks}, one ${this.scheduler.kind} device each; this host has ${this.scheduler.capacity} (${how})`;
  }

  /** The live attempt's join file while it starts or runs (multi-node experiments only); not
   *  while it stops, so that a node that (re)joins late never joins an attempt on its way out. */
  joinFile(id: string): string | null {
    const state = this.store.getExperiment(id)?.state;
    if (!this.live.has(id) || (state !== 'STARTING' && state !== 'RUNNING')) return null;
    return this.joinFiles.get(id) ?? null;
  }

  create(req: CreateRequest): ExperimentRow {
    const misfit = this.misfit(req);
    if (misfit) throw new ApiError(400, 'invalid_config', misfit);
    const row = this.store.createExperiment({ ...req, runDir: req.runDir ?? this.runDir(req.id) });
    this.bus.publish(this.store.eventsAfter(req.id, 0, 1)[0]!); // QUEUED
    this.enqueue(row);
    this.pump();
    return this.get(req.id);
  }

  /** Place queued runs (QUEUED, RESUMING or RESTARTING) on free devices. */
  pump(): void {
    if (this.shuttingDown) return;
    for (const placement of this.scheduler.schedule()) void this.start(placement);
  }

  private latestCheckpoint(id: string): { path: string; step: number } | null {
    const kept = this.store.checkpoints(id).filter((c) => existsSync(c.path));
    return kept.length ? kept[kept.length - 1]! : null;
  }

  private async start(p: Placement): Promise<void> {
    const id = p.runId;
    const row = this.get(id);
    this.move(id, row.state, 'STARTING', { devices: p.devices, cause: null });
    const latest = row.state === 'QUEUED' ? null : this.latestCheckpoint(id);
    const steps = (row.config as { train?: { steps?: number } }).train?.steps;
    if (latest && steps !== undefined && latest.step >= steps) {
      // The final checkpoint was written but the attempt ended (a service restart) before it
      // settled: the training is done. A launch would plan no step, and its ranks would wait
      // for a plan that never comes.
      this.scheduler.release(id);
      this.move(id, 'STARTING', 'RUNNING');
      this.move(id, 'RUNNING', 'STOPPING_COMPLETED', { summary: { status: 'completed', steps: latest.step, final_loss: null, cause: 'its final checkpoint was written before the attempt ended: nothing left to train' } });
      this.move(id, 'STOPPING_COMPLETED', 'COMPLETED', { pid: null, devices: null });
      this.pump();
      return;
    }
    const resumeFrom = latest?.path ?? null;
    let run: LaunchedRun;
    try {
      run = await this.launcher({
        experimentId: id,
        attempt: this.store.countTransitions(id, 'STARTING'),
        config: row.config as Record<string, unknown>,
        runDir: row.run_dir,
        env: deviceEnv(p),
        resumeFrom,
        events: {
          onStarted: ({ pid }) => {
            const cur = this.get(id);
            if (cur.state === 'STARTING') this.move(id, 'STARTING', 'RUNNING', { pid: pid ?? null });
          },
          onMetrics: (step, values) => this.bus.publish(this.store.recordMetrics(id, step, values)),
          onCheckpoint: (c) => {
            this.bus.publish(this.store.addCheckpoint(id, c));
            this.applyRetention(id);
          },
          // Each attempt writes a fresh join file (a new per-run key): the other nodes must run
          // `dmfr join` again after every restart or resume.
          onJoin: ({ joinFile, nnodes }) => {
            this.joinFiles.set(id, joinFile);
            const timeoutS = (row.config as { runtime?: { startup_timeout_s?: number } }).runtime?.startup_timeout_s;
            const message =
              `waiting for ${nnodes - 1} more node(s) (runtime.startup_timeout_s = ${timeoutS} s); on node K (1 … ${nnodes - 1}) run: ` +
              `dmfr join ${joinFile} --node-rank K (or, joining every attempt: dmfr join --experiment ${id} --server <this service> --node-rank K)`;
            this.bus.publish(this.store.appendEvent(id, 'log', { message, join_file: joinFile, nnodes }));
            this.log.info({ experiment: id, joinFile }, message);
          },
        },
      });
    } catch (err) {
      this.scheduler.release(id);
      this.move(id, 'STARTING', 'STOPPING_ERROR', { cause: `launch failed: ${(err as Error).message}` });
      this.move(id, 'STOPPING_ERROR', 'ERROR');
      this.pump();
      return;
    }
    this.live.set(id, run);
    const settled = run.done.then(
      (outcome) => this.settle(id, outcome),
      (err: Error) => this.settle(id, { status: 'failed', steps: 0, finalLoss: null, cause: err.message, summary: {} }),
    );
    this.settled.set(id, settled);
  }

  /** Decide what a finished run means given the state the experiment is in. */
  private settle(id: string, outcome: RunOutcome): void {
    this.live.delete(id);
    this.joinFiles.delete(id);
    if (this.shuttingDown) return; // reconciled at the next start-up
    const row = this.get(id);
    const summary = outcome.summary;
    const fail = (cause: string) => {
      const from = this.get(id).state;
      if (from !== 'STOPPING_ERROR') this.move(id, from, 'STOPPING_ERROR', { cause });
      this.move(id, 'STOPPING_ERROR', 'ERROR', { summary });
    };
    switch (row.state) {
      case 'PAUSING':
        this.scheduler.release(id);
        if (outcome.status === 'failed') fail(outcome.cause ?? 'failed while pausing');
        else this.move(id, 'PAUSING', 'PAUSED', { summary, devices: null, pid: null });
        break;
      case 'STOPPING_CANCELED':
        this.scheduler.release(id);
        this.move(id, 'STOPPING_CANCELED', 'CANCELED', { summary, pid: null });
        break;
      case 'RESTARTING':
        this.scheduler.release(id);
        this.enqueue(row);
        break;
      case 'STARTING':
      case 'RUNNING':
        this.scheduler.release(id);
        if (outcome.status === 'completed') {
          this.move(id, row.state, 'STOPPING_COMPLETED', { summary });
          this.move(id, 'STOPPING_COMPLETED', 'COMPLETED', { pid: null });
        } else if (outcome.status === 'failed' && outcome.inputError) {
          // A config or data error fails the same way on every launch: no restart (issue #12, item 8).
          fail(`${outcome.cause ?? 'failed'} (a configuration or data error: not restarted)`);
        } else if (outcome.status === 'failed' && row.restarts < row.max_restarts) {
          this.store.bumpRestarts(id);
          this.move(id, row.state, 'RESTARTING', { cause: outcome.cause, summary });
          this.enqueue(row);
        } else if (outcome.status === 'canceled') {
          this.move(id, row.state, 'STOPPING_CANCELED', { summary });
          this.move(id, 'STOPPING_CANCELED', 'CANCELED', { pid: null });
        } else {
          fail(outcome.cause ?? 'failed');
        }
        break;
      default:
        this.scheduler.release(id);
        this.log.warn({ experiment: id, state: row.state, outcome: outcome.status }, 'run ended in an unexpected state');
    }
    this.pump();
  }

  stop(id: string): ExperimentRow {
    const row = this.get(id);
    this.require(row, 'STOPPING_CANCELED', 'stop');
    this.move(id, row.state, 'STOPPING_CANCELED', { cause: 'stopped by request' });
    const run = this.live.get(id);
    if (run) void run.stop('canceled');
    else {
      this.scheduler.dequeue(id);
      this.move(id, 'STOPPING_CANCELED', 'CANCELED');
    }
    return this.get(id);
  }

  pause(id: string): ExperimentRow {
    const row = this.get(id);
    this.require(row, 'PAUSING', 'pause');
    const run = this.live.get(id);
    if (!run) throw conflict(`experiment ${id} has no live run to pause`, row.state);
    this.move(id, row.state, 'PAUSING');
    void run.stop('paused');
    return this.get(id);
  }

  resume(id: string): ExperimentRow {
    const row = this.get(id);
    this.require(row, 'RESUMING', 'resume');
    const misfit = this.misfit(row);
    if (misfit) throw conflict(`cannot resume experiment ${id}: ${misfit}`, row.state);
    this.move(id, row.state, 'RESUMING');
    this.enqueue(row);
    this.pump();
    return this.get(id);
  }

  restart(id: string): ExperimentRow {
    const row = this.get(id);
    this.require(row, 'RESTARTING', 'restart');
    const run = this.live.get(id);
    if (!run) throw conflict(`experiment ${id} has no live run to restart`, row.state);
    this.move(id, row.state, 'RESTARTING', { cause: 'restarted by request' });
    void run.stop('restart');
    return this.get(id);
  }

  delete(id: string): void {
    const row = this.get(id);
    if (ACTIVE.has(row.state) || this.live.has(id)) throw conflict(`experiment ${id} is ${row.state}; stop it before deleting`, row.state);
    this.scheduler.dequeue(id);
    this.store.deleteExperiment(id);
    // A study cell's run directory (studies/<id>/cells/<hash>) belongs to the study: its metrics,
    // checkpoints and report stay; only an experiment's own directory goes with it.
    if (path.resolve(row.run_dir) === path.resolve(this.runDir(id))) rmSync(row.run_dir, { recursive: true, force: true });
  }

  /** Keep the latest N and the best K checkpoints; delete the others' files. */
  private applyRetention(id: string): void {
    const policy = this.get(id).checkpoint_policy;
    if (!policy) return;
    const all = this.store.checkpoints(id);
    const keep = new Set(all.slice(-policy.keep_latest).map((c) => c.step));
    if (policy.keep_best > 0) {
      const scored = all.filter((c) => c.metric !== null);
      scored.sort((a, b) => (policy.smaller_is_better ? a.metric! - b.metric! : b.metric! - a.metric!));
      for (const c of scored.slice(0, policy.keep_best)) keep.add(c.step);
    }
    for (const c of all) {
      if (keep.has(c.step)) continue;
      this.store.removeCheckpoint(id, c.step);
      if (path.resolve(c.path).startsWith(path.resolve(this.dataDir) + path.sep)) rmSync(c.path, { force: true });
    }
  }

  /**
   * Start-up reconciliation: the previous service process is gone, and so are its ranks (they exit
   * when their controller vanishes; any leftover process group is killed here). Nothing stays in an
   * active state without ranks: interrupted runs go back to the queue to restart from their latest
   * checkpoint; half-finished stops settle.
   */
  reconcile(): void {
    for (const row of this.store.listExperiments({ limit: 1_000_000, offset: 0 }).items.reverse()) {
      if (row.pid) {
        try {
          process.kill(-row.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (ACTIVE.has(row.state)) settleOrphanedRuns(row.run_dir, this.log);
      const misfit = ['QUEUED', 'RESUMING', 'RESTARTING', 'STARTING', 'RUNNING'].includes(row.state) ? this.misfit(row) : null;
      if (misfit) {
        // Devices were reduced since it was queued (fewer --cpu-slots, fewer GPUs): it can never
        // be placed here, so it ends with that cause instead of stopping the service from starting.
        this.move(row.id, row.state, 'STOPPING_ERROR', { cause: `no longer fits this host: ${misfit}`, pid: null, devices: null });
        this.move(row.id, 'STOPPING_ERROR', 'ERROR');
        continue;
      }
      switch (row.state) {
        case 'QUEUED':
        case 'RESUMING':
        case 'RESTARTING':
          this.enqueue(row);
          break;
        case 'STARTING':
        case 'RUNNING':
          this.move(row.id, row.state, 'RESTARTING', { cause: 'service restarted', pid: null, devices: null });
          this.enqueue(row);
          break;
        case 'PAUSING':
          this.move(row.id, 'PAUSING', 'PAUSED', { cause: 'service restarted while pausing', pid: null, devices: null });
          break;
        case 'STOPPING_CANCELED':
          this.move(row.id, row.state, 'CANCELED', { pid: null, devices: null });
          break;
        case 'STOPPING_COMPLETED':
          this.move(row.id, row.state, 'COMPLETED', { pid: null, devices: null });
          break;
        case 'STOPPING_ERROR':
          this.move(row.id, row.state, 'ERROR', { pid: null, devices: null });
          break;
        default:
          break;
      }
    }
    this.pump();
  }

  /** Graceful shutdown: no new placements; live runs checkpoint and stop; wait for them. */
  async shutdown(graceMs: number): Promise<void> {
    this.shuttingDown = true;
    const runs = [...this.live.entries()];
    await Promise.all(runs.map(([, run]) => run.stop('restart').catch(() => undefined)));
    const all = Promise.all([...this.settled.values()]);
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    if ((await Promise.race([all, timeout])) === 'timeout') await Promise.all(runs.map(([, run]) => run.kill().catch(() => undefined)));
  }

  isLive(id: string): boolean {
    return this.live.has(id);
  }
}

/**
 * The per-run store of an experiment whose service was killed: the attempt that was live then has
 * no controller any more, so its run row (still `running`, no `ended_at`) becomes `failed`.
 */
function settleOrphanedRuns(runDir: string, log: Logger): void {
  const file = path.join(runDir, 'dmfr.sqlite');
  if (!existsSync(file)) return;
  let runs: RunStore | undefined;
  try {
    runs = new RunStore(file);
    const open = runs.db
      .prepare(`SELECT id FROM runs WHERE state NOT IN (${TERMINAL_STATES.map(() => '?').join(', ')})`)
      .all(...TERMINAL_STATES) as { id: string }[];
    for (const { id } of open) runs.transition(id, 'failed', 'service restarted: the attempt lost its controller');
  } catch (err) {
    log.warn({ runDir, err: (err as Error).message }, 'cannot settle the run store of an interrupted attempt');
  } finally {
    runs?.close();
  }
}

/** Ranks that run on this host: train.nproc split over runtime.nnodes (validated to divide). */
export function localRanks(row: Pick<ExperimentRow, 'nproc' | 'config'>): number {
  const nnodes = (row.config as { runtime?: { nnodes?: number } }).runtime?.nnodes ?? 1;
  return row.nproc / nnodes;
}
