// RunController: one training run. Binds the control ROUTER and the events PULL, launches the
// ranks under torchrun, answers the handshake, streams plans against credit, records metrics and
// state in SQLite, supervises the ranks, and resolves with a RunSummary. The CLI (`dmfr run`) and
// the future HTTP service both drive runs through this class (docs/architecture.md).
import { EventEmitter } from 'node:events';
import * as zmq from 'zeromq';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { RunConfig } from '../config/schema.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { createSampler } from '../sampler/index.ts';
import type { DatasetMeta, Sampler } from '../sampler/types.ts';
import { flattenMetrics } from '../store/metric-names.ts';
import { Store, type RunState } from '../store/store.ts';
import { ControllerLink, WireRejection, type Body, type Message, type MsgType, type NamedBuffer } from '../wire/index.ts';
import { newKey, newRunId } from './ids.ts';
import { launchRanks, rootCauseLine, torchrunRootCause, type Launched, type NodeSpec } from './launch.ts';
import { advertised, freePort, writeJoinInfo } from './nodes.ts';
import { isAlive, terminate } from './processes.ts';
import { RateMeter, type RunStatus, type RunSummary } from './summary.ts';

/** How long a rank may take from launch to its hello (importing torch) when rank_timeout_s is shorter. */

export interface RunOptions {
  config: RunConfig;
  /** Run directory; default runs/<run_id> under the current directory. */
  outDir?: string;
  runId?: string;
  /** Extra arguments after `-m dmfr.worker`. */
  workerArgs?: string[];
  /** Python executable for torchrun (default: $DMFR_PYTHON or the venv's). */
  python?: string;
  maxMessageBytes?: number;
  logger?: Logger;
  /** Extra environment for torchrun and the ranks. */
  env?: Record<string, string>;
  /** A checkpoint to resume from (sent in `config.resume`). */
  resumeFrom?: string | null;
  /** Experiment the run belongs to (default: a new one named after config.name, id = run id). */
  experimentId?: string;
  /** Python module the ranks run (default dmfr.worker). */
  module?: string;
}

export interface RankInfo {
  rank: number;
  identity: Buffer;
  session: string;
  pid: number;
  host: string;
  device: string;
  torchVersion: string;
  lastSeen: number;
  lastStep: number;
  ready: Body<'ready'> | null;
  readyBuffers: Message['buffers'];
  credit: number;
  nextStep: number;
  bye: Body<'bye'> | null;
  goneSince: number | null;
}

export interface MetricsEvent extends Body<'metrics'> {
  total_steps: number;
}

/**
 * Events: 'state' (to, from, cause), 'hello' (RankInfo), 'running' (), 'metrics' (MetricsEvent),
 * 'rejected' (reason, detail), 'rank-error' (rank, body), 'checkpoint' (body), 'bye' (rank, body).
 */
export class RunController extends EventEmitter {
  readonly config: RunConfig;
  readonly runId: string;
  readonly runDir: string;
  readonly store: Store;
  readonly ranks = new Map<number, RankInfo>();

  readonly link: ControllerLink;
  private readonly key = newKey();
  /** The controller's CURVE key pair when runtime.curve is on. */
  private curve: { publicKey: string; secretKey: string } | null = null;
  /** <run_dir>/join.json for the other nodes of a multi-node run, once written. */
  joinFile: string | null = null;
  private readonly log: Logger;
  private launched: Launched | null = null;
  private readonly module: string;
  private sampler: Sampler | null = null;
  private stateValue: RunState = 'created';
  private startedAt = 0;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private exitPromise: Promise<void> = Promise.resolve();
  private finishing: Promise<RunSummary> | null = null;
  private resolveDone!: (s: RunSummary) => void;
  private readonly done: Promise<RunSummary>;
  private tick: NodeJS.Timeout | null = null;
  private stopFinalStep: number | null = null;
  private cancelRequested: string | null = null;
  private failureCause: string | null = null;
  private metricsSeen = new Set<number>();
  private duplicates = 0;
  private finalLoss: number | null = null;
  /** Steps completed at the latest metrics message (the one step number, docs/protocol.md). */
  private stepsCompleted = 0;
  private readonly meter = new RateMeter();
  private closed = false;

  constructor(private readonly opts: RunOptions) {
    super();
    this.config = opts.config;
    this.module = opts.module ?? 'dmfr.worker';
    this.runId = opts.runId ?? newRunId();
    this.runDir = resolve(opts.outDir ?? join('runs', this.runId));
    mkdirSync(this.runDir, { recursive: true });
    this.log = (opts.logger ?? rootLog).child({ run: this.runId });
    this.store = new Store(join(this.runDir, 'dmfr.sqlite'));
    const experimentId = opts.experimentId ?? this.runId;
    this.store.ensureExperiment(experimentId, this.config.name, this.config);
    this.store.createRun({ id: this.runId, experimentId, runDir: this.runDir, nproc: this.config.train.nproc, config: this.config });
    if (this.config.runtime.curve) this.curve = zmq.curveKeyPair();
    this.link = new ControllerLink({
      runId: this.runId,
      key: this.key,
      curveSecretKey: this.curve?.secretKey,
      bind: this.config.runtime.bind,
      maxMessageBytes: opts.maxMessageBytes,
      accept: (msg, identity) => this.checkSender(msg, identity),
    });
    this.link.on('message', (msg, identity) => this.onMessage(msg, identity));
    this.link.on('rejected', (reason, detail, from) => {
      this.log.warn({ reason, detail, from }, 'rejected message');
      this.emit('rejected', reason, detail);
    });
    this.link.on('send-error', (e) => this.log.debug({ err: e.message }, 'send failed'));
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  get rejected() {
    return this.link.rejected;
  }

  /** Where the ranks connect (set once the run has started). */
  get endpoints(): { control: string; events: string } {
    return this.link.endpoints;
  }

  get state(): RunState {
    return this.stateValue;
  }

  /** torchrun's pid (the leader of the ranks' launcher process group), once launched. */
  get pid(): number | undefined {
    return this.launched?.child.pid;
  }

  get totalSteps(): number {
    return this.config.train.steps;
  }

  /** Starts the run; the promise resolves once it has ended (never rejects). */
  start(): Promise<RunSummary> {
    if (this.startedAt !== 0) return this.done;
    this.startedAt = Date.now();
    this.begin().catch((e: Error) => this.fail(`controller error: ${e.message}`));
    return this.done;
  }

  /**
   * Ends the run early. The first call sends `stop` (ranks finish the steps already planned to all
   * of them, then exit); a second call, or a run not yet training, ends the processes at once.
   */
  cancel(reason = 'canceled', opts: { checkpoint?: boolean } = {}): void {
    if (this.finishing || this.closed) return;
    if (this.cancelRequested !== null || this.stateValue !== 'running') {
      this.cancelRequested ??= reason;
      void this.finish('canceled', reason);
      return;
    }
    this.cancelRequested = reason;
    const planned = [...this.ranks.values()].map((r) => r.nextStep);
    this.stopFinalStep = Math.min(...planned) - 1;
    this.setState('stopping', reason);
    for (const r of this.ranks.values()) this.sendTo(r, 'stop', { reason, final_step: this.stopFinalStep, checkpoint: opts.checkpoint ?? false });
    // Ranks that do not finish in time are ended anyway.
    const grace = (this.config.runtime.rank_timeout_s + this.config.runtime.stop_grace_s) * 1000;
    setTimeout(() => void this.finish('canceled', reason), grace).unref();
  }

  /** Ends the processes now (SIGTERM → stop_grace_s → SIGKILL); the run ends as canceled. */
  kill(reason = 'killed'): Promise<RunSummary> {
    if (this.startedAt === 0) this.startedAt = Date.now();
    this.cancelRequested ??= reason;
    return this.finish('canceled', this.cancelRequested);
  }

  private setState(to: RunState, cause: string | null = null): void {
    const from = this.stateValue;
    if (from === to) return;
    this.stateValue = to;
    this.store.transition(this.runId, to, cause);
    this.log.info({ from, to, cause }, 'run state');
    this.emit('state', to, from, cause);
  }

  private async begin(): Promise<void> {
    const rt = this.config.runtime;
    const bound = await this.link.bind();
    if (this.finishing) return; // canceled while binding: launch nothing
    const endpoints = { control: advertised(bound.control, rt.advertise), events: advertised(bound.events, rt.advertise) };
    const node = rt.nnodes > 1 ? await this.planNodes(endpoints) : undefined;
    this.setState('starting');
    this.launched = launchRanks({
      nproc: this.config.train.nproc / rt.nnodes,
      node,
      threadsPerRank: rt.threads_per_rank,
      logFile: join(this.runDir, 'ranks.log'),
      workerArgs: this.opts.workerArgs,
      module: this.module,
      python: this.opts.python,
      env: {
        DMFR_CONTROL_ENDPOINT: endpoints.control,
        DMFR_EVENTS_ENDPOINT: endpoints.events,
        DMFR_RUN_ID: this.runId,
        DMFR_KEY: this.key.toString('hex'),
        ...(this.curve ? { DMFR_CURVE_SERVER_KEY: this.curve.publicKey } : {}),
        DMFR_RUN_DIR: this.runDir,
        DMFR_DEVICE: rt.device,
        ...this.opts.env,
      },
    });
    this.log.info({ command: this.launched.command.join(' '), pid: this.launched.child.pid }, 'launched torchrun');
    const child = this.launched.child;
    this.exitPromise = new Promise((res) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        res();
        this.onTorchrunExit();
      });
      child.once('error', (e) => {
        this.exitInfo = { code: null, signal: null };
        res();
        this.fail(`cannot start torchrun: ${e.message}`);
      });
    });
    this.tick = setInterval(() => this.onTick(), rt.heartbeat_s * 1000);
  }

  /** Node 0's torchrun settings, and the join file the other nodes start from. */
  private async planNodes(endpoints: { control: string; events: string }): Promise<NodeSpec> {
    const rt = this.config.runtime;
    const masterAddr = rt.advertise || rt.bind;
    const masterPort = rt.master_port || (await freePort(rt.bind));
    this.joinFile = join(this.runDir, 'join.json');
    writeJoinInfo(this.joinFile, {
      version: 1,
      run_id: this.runId,
      control: endpoints.control,
      events: endpoints.events,
      key: this.key.toString('hex'),
      nnodes: rt.nnodes,
      nproc_per_node: this.config.train.nproc / rt.nnodes,
      master_addr: masterAddr,
      master_port: masterPort,
      device: rt.device,
      threads_per_rank: rt.threads_per_rank,
      curve_server_key: this.curve?.publicKey ?? null,
    });
    this.emit('join', this.joinFile);
    return { nnodes: rt.nnodes, nodeRank: 0, masterAddr, masterPort };
  }

  private onMessage(msg: Message, identity: Buffer | null): void {
    try {
      this.dispatch(msg, identity);
    } catch (e) {
      this.fail(`controller error handling ${msg.header.msg_type} from rank ${msg.header.rank}: ${(e as Error).message}`);
    }
  }

  /** The sender must be a rank of this run and, once it said hello, keep its session. */
  private checkSender(msg: Message, identity: Buffer | null): void {
    const rank = msg.header.rank;
    const n = this.config.train.nproc;
    if (rank === null || rank >= n) throw new WireRejection('wrong_run', `rank ${rank} is not in 0..${n - 1}`);
    const known = this.ranks.get(rank);
    if (known && known.session !== msg.header.session && !(identity && msg.header.msg_type === 'hello')) {
      throw new WireRejection('wrong_run', `rank ${rank} session ${msg.header.session} is not the one that said hello`);
    }
  }

  private dispatch(msg: Message, identity: Buffer | null): void {
    const rank = msg.header.rank!;
    const info = this.ranks.get(rank);
    if (info) info.lastSeen = Date.now();
    switch (msg.header.msg_type) {
      case 'hello':
        return this.onHello(msg as Message<'hello'>, identity!);
      case 'ready':
        return this.onReady(info, msg as Message<'ready'>);
      case 'credit':
        if (!info) return;
        info.credit += (msg.body as Body<'credit'>).chunks;
        return this.pump(info);
      case 'metrics':
        if (rank !== 0) return void this.log.warn({ rank }, 'metrics from a rank other than 0 ignored');
        return this.onMetrics(msg.body as Body<'metrics'>);
      case 'heartbeat':
        if (info) info.lastStep = (msg.body as Body<'heartbeat'>).step ?? info.lastStep;
        return;
      case 'checkpoint-saved':
        this.log.info(msg.body, 'checkpoint saved');
        this.emit('checkpoint', msg.body);
        return;
      case 'error': {
        const body = msg.body as Body<'error'>;
        this.emit('rank-error', rank, body);
        this.log.error({ rank, type: body.type, message: body.message, step: body.step }, 'rank error');
        // A rank's error is often the echo of another rank's death (a collective whose peer is
        // gone): name the dead rank first.
        const dead = this.deadRanks().filter((d) => d.rank !== rank);
        const first = dead.map((d) => `rank ${d.rank} (pid ${d.pid}) exited without saying bye; then `).join('');
        // error.step counts the steps the rank had completed (docs/protocol.md).
        this.fail(`${first}rank ${rank} failed after ${body.step ?? '?'} completed steps: ${body.type}: ${body.message}`);
        return;
      }
      case 'bye': {
        const body = msg.body as Body<'bye'>;
        if (info) info.bye = body;
        this.emit('bye', rank, body);
        this.log.info({ rank, ...body }, 'bye');
        if (body.reason === 'error') this.fail(this.failureCause ?? `rank ${rank} stopped on an error after ${body.last_step + 1} completed steps`);
        else if (body.reason === 'controller_lost') this.fail(`rank ${rank} lost its controller after ${body.last_step + 1} completed steps`);
        return;
      }
    }
  }

  /** Ranks on this host whose process is gone without a `bye`. */
  private deadRanks(): RankInfo[] {
    return [...this.ranks.values()].filter((r) => !r.bye && r.host === hostname() && !isAlive(r.pid));
  }

  private onHello(msg: Message<'hello'>, identity: Buffer): void {
    const b = msg.body;
    const n = this.config.train.nproc;
    if (b.rank !== msg.header.rank || b.world_size !== n) {
      this.fail(`rank ${msg.header.rank} said hello with rank ${b.rank}, world size ${b.world_size}; expected world size ${n}`);
      return;
    }
    if (this.ranks.has(b.rank)) this.log.warn({ rank: b.rank }, 'rank said hello again (new session)');
    const info: RankInfo = {
      rank: b.rank,
      identity,
      session: msg.header.session,
      pid: b.pid,
      host: b.host,
      device: b.device,
      torchVersion: b.torch_version,
      lastSeen: Date.now(),
      lastStep: -1,
      ready: null,
      readyBuffers: {},
      credit: 0,
      nextStep: 0,
      bye: null,
      goneSince: null,
    };
    this.ranks.set(b.rank, info);
    this.log.info({ rank: b.rank, pid: b.pid, host: b.host, device: b.device, torch: b.torch_version }, 'hello');
    this.emit('hello', info);
    const resume = this.opts.resumeFrom ? { checkpoint: this.opts.resumeFrom } : null;
    this.sendTo(info, 'config', { config: this.config as unknown as Record<string, unknown>, resume });
  }

  private onReady(info: RankInfo | undefined, msg: Message<'ready'>): void {
    if (!info) return;
    info.ready = msg.body;
    info.readyBuffers = msg.buffers;
    info.nextStep = msg.body.start_step;
    const n = this.config.train.nproc;
    const all = [...this.ranks.values()].filter((r) => r.ready);
    if (all.length < n || this.sampler) return;
    const r0 = this.ranks.get(0)!;
    const { labels, domains, pair } = r0.readyBuffers;
    if (!(labels instanceof Int32Array) || !(domains instanceof Int16Array) || !(pair instanceof Int32Array)) {
      this.fail('rank 0 sent ready without the labels/domains/pair tables');
      return;
    }
    const meta: DatasetMeta = {
      numSamples: r0.ready!.num_samples,
      numClasses: r0.ready!.num_classes,
      domains: r0.ready!.domains,
      labels,
      sampleDomains: domains,
      pair,
    };
    try {
      this.sampler = createSampler(this.config, meta, n);
    } catch (e) {
      this.fail(`cannot build the sampler: ${(e as Error).message}`);
      return;
    }
    this.log.info({ samples: meta.numSamples, classes: meta.numClasses, domains: meta.domains.length }, 'all ranks ready');
    this.setState('running');
    this.emit('running');
    for (const r of this.ranks.values()) this.pump(r);
  }

  /** Sends plan chunks to a rank while it has credit, up to the last step (or the stop step). */
  private pump(r: RankInfo): void {
    if (!this.sampler || this.finishing) return;
    const chunkSteps = this.config.sampler.chunk_steps;
    const end = this.stopFinalStep !== null ? this.stopFinalStep + 1 : this.totalSteps;
    while (r.credit > 0 && r.nextStep < end) {
      const n = Math.min(chunkSteps, this.totalSteps - r.nextStep);
      const c = this.sampler.chunk(r.nextStep, n, r.rank);
      const shape = [c.numSteps, c.shardSize];
      const buffers: NamedBuffer[] = [
        { name: 'indices', shape, array: c.indices },
        { name: 'domains', shape, array: c.domains },
      ];
      if (c.pair) buffers.push({ name: 'pair', shape, array: c.pair });
      this.sendTo(
        r,
        'plan',
        { first_step: c.firstStep, num_steps: c.numSteps, shard_size: c.shardSize, last: c.firstStep + c.numSteps >= this.totalSteps, meta_test: c.metaTest },
        buffers,
      );
      r.nextStep += n;
      r.credit -= 1;
    }
  }

  private onMetrics(b: Body<'metrics'>): void {
    if (this.metricsSeen.has(b.step)) {
      this.duplicates++;
      this.log.warn({ step: b.step }, 'duplicate metrics for a step');
      return;
    }
    this.metricsSeen.add(b.step);
    this.store.addMetrics(this.runId, b.step, flattenMetrics(b));
    if (this.store.pendingMetrics > 2000) this.store.flushMetrics();
    if (b.step >= this.stepsCompleted) {
      this.stepsCompleted = b.step;
      this.finalLoss = b.loss;
    }
    this.meter.add(b.step, Date.now(), b.plan_wait_s, b.step_time_s);
    this.emit('metrics', { ...b, total_steps: this.totalSteps } satisfies MetricsEvent);
  }

  private sendTo<T extends MsgType>(r: RankInfo, type: T, body: Omit<Body<T>, 'buffers'>, buffers: NamedBuffer[] = []): void {
    void this.link.send(r.identity, type, body, buffers);
  }

  /** Every heartbeat_s: heartbeats to the ranks, silence and exit detection, a metrics flush. */
  private onTick(): void {
    if (this.finishing) return;
    const rt = this.config.runtime;
    const now = Date.now();
    for (const r of this.ranks.values()) if (!r.bye) this.sendTo(r, 'heartbeat', {});
    this.store.flushMetrics();
    for (let rank = 0; rank < this.config.train.nproc; rank++) {
      const r = this.ranks.get(rank);
      const lastSeen = r?.lastSeen ?? this.startedAt;
      // Before its hello a rank is importing torch (and on several nodes, torchrun starts no rank
      // until every node has joined), which says nothing; allow it longer.
      const limitS = r ? rt.rank_timeout_s : Math.max(rt.rank_timeout_s, rt.startup_timeout_s);
      if (!r?.bye && now - lastSeen > limitS * 1000) {
        const what = r ? `runtime.rank_timeout_s = ${rt.rank_timeout_s}` : `no hello within ${limitS} s of the launch (runtime.startup_timeout_s)`;
        this.fail(`rank ${rank} sent nothing for ${((now - lastSeen) / 1000).toFixed(1)} s (${what})`);
        return;
      }
      // A rank process that is gone without `bye` (e.g. killed): give its last messages 2 s to land.
      if (r && !r.bye && r.host === hostname() && !isAlive(r.pid)) r.goneSince ??= now;
    }
    // Name every rank found gone, earliest first: when one rank is killed, torchrun ends its peers
    // at once, and a tick often finds them all gone; naming only the lowest rank blamed a bystander.
    // Within a tick, the rank that fell silent first (lastSeen) went first: its peers kept sending
    // until torchrun ended them.
    const gone = [...this.ranks.entries()].filter(([, r]) => !r.bye && r.goneSince != null)
      .sort(([ra, a], [rb, b]) => a.goneSince! - b.goneSince! || a.lastSeen - b.lastSeen || ra - rb);
    if (gone.length > 0 && now - gone[0]![1].goneSince! > 2000) {
      this.fail(gone.map(([rank, r]) => `rank ${rank} (pid ${r.pid}) exited without saying bye${r.lastStep >= 0 ? ` after ${r.lastStep + 1} completed steps` : ''}`).join('; '));
    }
  }

  private onTorchrunExit(): void {
    const { code, signal } = this.exitInfo!;
    this.log.info({ code, signal }, 'torchrun exited');
    if (this.finishing) return;
    if (this.cancelRequested !== null) {
      void this.finish('canceled', this.cancelRequested);
      return;
    }
    // Let the last events (metrics, bye) that are still in flight land before judging.
    setTimeout(() => {
      if (this.finishing) return;
      const missing = [...Array(this.config.train.nproc).keys()].filter((r) => this.ranks.get(r)?.bye?.reason !== 'completed');
      if (code === 0 && missing.length === 0) void this.finish('completed', null);
      else {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const detail = missing.length ? `; rank(s) ${missing.join(', ')} did not complete` : '';
        const tail = this.launched?.tail() ?? [];
        const root = [torchrunRootCause(tail), rootCauseLine(tail)].filter(Boolean).join('; ');
        this.fail(`torchrun ${how}${detail}${root ? `: ${root}` : ''} (see ${join(this.runDir, 'ranks.log')})`);
      }
    }, 300);
  }

  private fail(cause: string): void {
    if (this.finishing) return;
    this.failureCause ??= cause;
    void this.finish(this.cancelRequested !== null ? 'canceled' : 'failed', this.cancelRequested ?? cause);
  }

  private finish(status: RunStatus, cause: string | null): Promise<RunSummary> {
    this.finishing ??= this.doFinish(status, cause).then(
      (s) => {
        this.resolveDone(s);
        return s;
      },
      (e: Error) => {
        const s = this.summary('failed', `controller error while finishing: ${e.message}`);
        this.resolveDone(s);
        return s;
      },
    );
    return this.finishing;
  }

  private async doFinish(status: RunStatus, cause: string | null): Promise<RunSummary> {
    if (this.tick) clearInterval(this.tick);
    if (status !== 'completed') this.log.warn({ status, cause }, 'ending run');
    const child = this.launched?.child;
    if (child && this.exitInfo === null) {
      const groups = [child.pid!, ...[...this.ranks.values()].map((r) => r.pid)];
      const left = await terminate({ runId: this.runId, groups }, this.config.runtime.stop_grace_s);
      if (left.length > 0) this.log.error({ pids: left }, 'processes still alive after SIGKILL');
      await Promise.race([this.exitPromise, new Promise((r) => setTimeout(r, 5000))]);
    } else if (child) {
      // torchrun is gone; make sure no rank outlived it.
      const groups = [...this.ranks.values()].map((r) => r.pid);
      await terminate({ runId: this.runId, groups }, this.config.runtime.stop_grace_s);
    }
    this.closed = true;
    this.link.close();
    const summary = this.summary(status, cause);
    this.store.flushMetrics();
    this.setState(status, cause);
    this.store.setSummary(this.runId, summary);
    this.store.close();
    return summary;
  }

  private summary(status: RunStatus, cause: string | null): RunSummary {
    const r0 = this.ranks.get(0);
    // bye.last_step is the 0-based index of the rank's last step: + 1 is steps completed.
    const steps = Math.max(this.stepsCompleted, (r0?.bye?.last_step ?? -1) + 1);
    const stepsPerS = this.meter.stepsPerS;
    return {
      run_id: this.runId,
      status,
      steps,
      final_loss: this.finalLoss,
      run_dir: this.runDir,
      samples_per_s: stepsPerS === null ? null : stepsPerS * this.config.train.batch_size,
      steps_per_s: stepsPerS,
      plan_wait_fraction: this.meter.planWaitFraction,
      wire_rejected: this.rejected.toJSON(),
      cause,
      duration_s: (Date.now() - this.startedAt) / 1000,
      train_time_s: r0?.bye?.train_time_s ?? null,
      metrics_duplicates: this.duplicates,
    };
  }
}

/** Runs one experiment to its end. */
export function runExperiment(opts: RunOptions): { controller: RunController; summary: Promise<RunSummary> } {
  const controller = new RunController(opts);
  return { controller, summary: controller.start() };
}

