// Assembles the service: store, event bus, device scheduler, supervisor and the HTTP app, and
// runs it until SIGTERM/SIGINT, then shuts down gracefully (stop intake, ask ranks to checkpoint
// and stop, close sockets, flush logs).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp, newStudyManager, REDACT } from './app.ts';
import type { ServiceContext } from './context.ts';
import { EventBus } from './bus.ts';
import { ArtifactStore, ServiceStore, StudyStore } from './db.ts';
import type { Launcher } from './launcher.ts';
import { controllerLauncher } from './controller-launcher.ts';
import { runPythonJson } from './python-cli.ts';
import { DeviceScheduler } from './scheduler.ts';
import { Supervisor } from './supervisor.ts';

export interface ServiceOptions {
  dataDir: string;
  host?: string;
  port?: number;
  token?: string;
  /** Directories whose files the API may name (datasets, evaluation inputs); default: the data dir. */
  dataRoots?: string[];
  /** Devices to schedule: CUDA GPUs when any are visible, else this many CPU slots. */
  cpuSlots?: number;
  gpus?: number;
  launcher?: Launcher;
  logger?: Logger;
}

export interface Service {
  app: FastifyInstance;
  supervisor: Supervisor;
  store: ServiceStore;
  scheduler: DeviceScheduler;
  close(graceMs?: number): Promise<void>;
}

/** Whether `host` is a loopback address: parsed as an IP (127.0.0.0/8, ::1, ::ffff:127.x.y.z), or the
 *  name `localhost`. Any other name (`127.0.0.1.nip.io`) may resolve anywhere: not loopback. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.split('.')[0] === '127';
  if (isIP(h) === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    if (mapped) return isIP(mapped[1]!) === 4 && mapped[1]!.split('.')[0] === '127';
    return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  }
  return false;
}

/** Refusing a start that would expose the API: a non-loopback address needs a token. */
export class ServiceConfigError extends Error {}

/** GPUs visible on this host (CUDA_VISIBLE_DEVICES, else nvidia-smi), 0 when none. */
export function countGpus(): number {
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) return visible.trim() === '' ? 0 : visible.split(',').length;
  try {
    return execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

export async function createService(opts: ServiceOptions): Promise<Service> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopback(host) && !opts.token) {
    throw new ServiceConfigError(
      `refusing to listen on ${host} without a token: set DMFR_TOKEN or pass --token-file FILE (listening off loopback needs one)`,
    );
  }
  const dataDir = path.resolve(opts.dataDir);
  mkdirSync(path.join(dataDir, 'experiments'), { recursive: true });
  const log = opts.logger ?? pino({ level: process.env.DMFR_LOG_LEVEL ?? 'info', redact: REDACT }, pino.destination(2));
  const store = new ServiceStore(path.join(dataDir, 'dmfr.sqlite'));
  const artifacts = new ArtifactStore(store.db);
  const bus = new EventBus();
  const gpus = opts.gpus ?? countGpus();
  const scheduler = gpus > 0 ? new DeviceScheduler('cuda', gpus) : new DeviceScheduler('cpu', opts.cpuSlots ?? availableParallelism());
  const supervisor = new Supervisor(store, bus, scheduler, opts.launcher ?? controllerLauncher(log), dataDir, log);
  const context: ServiceContext = { store, artifacts, bus, supervisor, dataDir, dataRoots: (opts.dataRoots ?? [dataDir]).map((r) => path.resolve(r)), pythonJson: runPythonJson };
  context.studyStore = new StudyStore(store.db);
  context.studies = newStudyManager(context, context.studyStore, log);
  const app = await buildApp({ context, token: opts.token, logger: log });
  supervisor.reconcile();
  context.studies.start();
  return {
    app,
    supervisor,
    store,
    scheduler,
    async close(graceMs = 30_000) {
      await app.close();
      context.studies!.close();
      await supervisor.shutdown(graceMs);
      store.close();
      log.flush?.();
    },
  };
}

/** `dmfr serve`: listen until SIGTERM/SIGINT. */
export async function serve(opts: ServiceOptions): Promise<void> {
  const service = await createService(opts);
  const address = await service.app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 8080 });
  process.stderr.write(`dmfr serve: listening on ${address} (data ${path.resolve(opts.dataDir)}; ${service.scheduler.capacity} ${service.scheduler.kind} devices)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.stderr.write('dmfr serve: shutting down\n');
      void service.close().then(resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
