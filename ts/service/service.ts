// Assembles the service: store, event bus, device scheduler, supervisor and the HTTP app, and
// runs it until SIGTERM/SIGINT, then shuts down gracefully (stop intake, ask ranks to checkpoint
// and stop, close sockets, flush logs).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp, REDACT } from './app.ts';
import { EventBus } from './bus.ts';
import { ArtifactStore, ServiceStore } from './db.ts';
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

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

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
    throw new Error(`refusing to listen on ${host} without a token: pass --token (or DMFR_TOKEN) for non-loopback addresses`);
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
  const app = await buildApp({ context: { store, artifacts, bus, supervisor, dataDir, pythonJson: runPythonJson }, token: opts.token, logger: log });
  supervisor.reconcile();
  return {
    app,
    supervisor,
    store,
    scheduler,
    async close(graceMs = 30_000) {
      await app.close();
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
