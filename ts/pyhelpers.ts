// Short in-process Python calls from TypeScript scripts (inspect a dataset, embed a few images
// with a checkpoint) through pythonia. Never on the training path: training goes through torchrun
// ranks over ZeroMQ. The bridge is one Python process per Node process (pythonia's design): open
// starts it with the project's venv and PYTHONPATH, every call has a timeout (a call that runs
// past it stops the Python process), Python exceptions surface as errors with their message,
// and dispose ends the Python process.
import { createRequire } from 'node:module';
import { pythonEnv, pythonExecutable } from './controller/launch.ts';

interface Pythonia {
  python: ((module: string) => Promise<Record<string, (...args: unknown[]) => Promise<unknown>>>) & { exit(): void };
  com: { proc: { pid?: number } | null };
}

export class PythonCallError extends Error {}

export class PythonHelpers {
  private constructor(
    private readonly bridge: Pythonia,
    private readonly module: Record<string, (...args: unknown[]) => Promise<unknown>>,
    readonly timeoutMs: number,
  ) {}

  static async open(opts: { timeoutMs?: number; python?: string } = {}): Promise<PythonHelpers> {
    // pythonia starts its Python when first loaded and on python() after an exit; both read
    // PYTHON_BIN and inherit this environment.
    const env = pythonEnv();
    process.env.PYTHON_BIN = opts.python ?? pythonExecutable();
    process.env.PYTHONPATH = env.PYTHONPATH;
    const bridge = createRequire(import.meta.url)('pythonia') as Pythonia;
    const module = await bridge.python('dmfr.ts_helpers');
    return new PythonHelpers(bridge, module, opts.timeoutMs ?? 60_000);
  }

  /** The Python process's pid (null once disposed). */
  get pid(): number | null {
    return this.bridge.com.proc?.pid ?? null;
  }

  private async call(name: string, ...args: unknown[]): Promise<string> {
    if (!this.bridge.com.proc) throw new PythonCallError(`python helpers are disposed; cannot call ${name}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.dispose();
        reject(new PythonCallError(`python call ${name} timed out after ${this.timeoutMs} ms; the Python process was stopped`));
      }, this.timeoutMs);
    });
    try {
      return String(await Promise.race([this.module[name]!(...args), timeout]));
    } catch (err) {
      if (err instanceof PythonCallError) throw err;
      // pythonia puts the Python traceback in the stack, ending with '*** JS *** Type: message'.
      const text = String((err as Error).stack ?? err);
      const raised = /\*\*\* JS \*\*\* ([^\n]*)/.exec(text)?.[1] ?? (((err as Error).message || text).split('\n')[0] ?? '');
      throw new PythonCallError(`python ${name} failed: ${raised.trim()}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async inspectDataset(path: string, limit?: number): Promise<Record<string, unknown>> {
    return JSON.parse(await this.call('inspect_dataset', path, limit ?? null));
  }

  async embedImages(checkpoint: string, paths: string[], flip = false): Promise<{ dim: number; features: number[][] }> {
    return JSON.parse(await this.call('embed_paths', checkpoint, JSON.stringify(paths), flip));
  }

  async pythonPid(): Promise<number> {
    return Number(await this.call('pid'));
  }

  /** For tests of the timeout: a Python call that takes `seconds`. */
  async sleep(seconds: number): Promise<string> {
    return this.call('sleep', seconds);
  }

  /** Ends the Python process. Idempotent. */
  dispose(): void {
    if (this.bridge.com.proc) this.bridge.python.exit();
  }
}
