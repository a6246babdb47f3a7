// The supervisor's launcher backed by the real training path: one RunController (ts/controller)
// per attempt (run id <experiment>-a<attempt>), all attempts of an experiment sharing its run directory so checkpoints carry over.
import type { Logger } from 'pino';
import type { RunConfig } from '../config/schema.ts';
import { RunController, type MetricsEvent } from '../controller/index.ts';
import { flattenMetrics } from '../store/metric-names.ts';
import type { Launcher } from './launcher.ts';

export function controllerLauncher(log: Logger): Launcher {
  return async (req) => {
    const controller = new RunController({
      config: req.config as unknown as RunConfig,
      outDir: req.runDir,
      runId: `${req.experimentId}-a${req.attempt}`,
      env: req.env,
      resumeFrom: req.resumeFrom,
      logger: log,
    });
    controller.on('state', (to: string) => {
      if (to === 'running') req.events.onStarted?.({ pid: controller.pid });
    });
    controller.on('metrics', (m: MetricsEvent) => {
      // The run store's names (terms under `terms.`); the service store keeps the same, and its
      // SSE events nest them back (ts/store/metric-names.ts). A non-finite value travels as null.
      const { loss, lr, samples_per_s, terms } = m;
      const values = flattenMetrics({ loss, lr, samples_per_s, terms });
      req.events.onMetrics?.(m.step, Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v ?? Number.NaN])));
    });
    controller.on('join', (joinFile: string) =>
      req.events.onJoin?.({ joinFile, nnodes: (req.config as unknown as RunConfig).runtime.nnodes }),
    );
    // A rank's ConfigError/DataError (`error` with input_error) fails every launch alike.
    let inputError = false;
    controller.on('rank-error', (_rank: number, body: { input_error?: boolean }) => {
      if (body.input_error) inputError = true;
    });
    controller.on('checkpoint', (c: { step: number; path: string; bytes: number }) => req.events.onCheckpoint?.(c));
    const done = controller.start().then((s) => ({
      status: s.status,
      steps: s.steps,
      finalLoss: s.final_loss,
      cause: s.cause,
      inputError: s.status === 'failed' && inputError,
      summary: s as unknown as Record<string, unknown>,
    }));
    return {
      stop: async (reason) => controller.cancel(reason, { checkpoint: true }),
      kill: async () => void (await controller.kill()),
      done,
    };
  };
}
