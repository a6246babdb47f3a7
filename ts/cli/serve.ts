// `dmfr serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--token T] [--cpu-slots N]`
import { serve } from '../service/service.ts';
import { parseCommandLine, UsageError } from './usage.ts';

export const SERVE_USAGE = `usage: dmfr serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--token T] [--cpu-slots N]
  --token defaults to $DMFR_TOKEN; listening off loopback requires one.`;

/** The flags of `dmfr serve` (test/ts/readme-commands.test.ts checks the docs against them). */
export const serveOptions = () =>
  ({
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8080' },
    'data-dir': { type: 'string', default: process.env.DMFR_DATA_DIR ?? 'dmfr-data' },
    token: { type: 'string' },
    'cpu-slots': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  }) as const;

export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, serveOptions());
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  if (values.help) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected 0–65535, got '${values.port}'`);
  const cpuSlots = values['cpu-slots'] === undefined ? undefined : Number(values['cpu-slots']);
  if (cpuSlots !== undefined && !(Number.isInteger(cpuSlots) && cpuSlots > 0)) throw new UsageError(`--cpu-slots: expected a positive integer`);
  await serve({ host: values.host, port, dataDir: values['data-dir'], token: values.token ?? process.env.DMFR_TOKEN, cpuSlots });
  return 0;
}
