// `dmfr serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--data-root DIR]… [--token-file FILE] [--cpu-slots N]`
import { serve, ServiceConfigError } from '../service/service.ts';
import { readTokenFile } from './token.ts';
import { parseCommandLine, UsageError } from './usage.ts';

export const SERVE_USAGE = `usage: dmfr serve [--host 127.0.0.1] [--port 8080] [--data-dir DIR] [--data-root DIR]… [--token-file FILE] [--cpu-slots N]
  The bearer token comes from --token-file FILE (its first line) or $DMFR_TOKEN; listening off
  loopback requires one. --token T still works but shows the token to every user of the host (ps).
  --data-root DIR (repeatable, default the data dir): where datasets and evaluation inputs named
  through the API may lie.`;

/** The token from --token-file, $DMFR_TOKEN or (deprecated) --token; undefined when none. */
function readToken(values: { token?: string; 'token-file'?: string }): string | undefined {
  if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('give --token-file or --token, not both');
  let token: string | undefined;
  if (values['token-file'] !== undefined) {
    token = readTokenFile(values['token-file']);
  } else if (values.token !== undefined) {
    process.stderr.write('dmfr serve: warning: --token puts the token in the process list (ps); use --token-file FILE or DMFR_TOKEN\n');
    token = values.token;
  } else {
    token = process.env.DMFR_TOKEN || undefined;
  }
  // Never inherited by a child (torchrun, the ranks, Python verbs): none of them needs it.
  delete process.env.DMFR_TOKEN;
  return token;
}

/** The flags of `dmfr serve` (test/ts/readme-commands.test.ts checks the docs against them). */
export const serveOptions = () =>
  ({
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8080' },
    'data-dir': { type: 'string', default: process.env.DMFR_DATA_DIR ?? 'dmfr-data' },
    'data-root': { type: 'string', multiple: true },
    token: { type: 'string' },
    'token-file': { type: 'string' },
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
  const token = readToken(values);
  const dataRoots = values['data-root']?.length ? [values['data-dir'], ...values['data-root']] : undefined;
  try {
    await serve({ host: values.host, port, dataDir: values['data-dir'], dataRoots, token, cpuSlots });
  } catch (e) {
    if (e instanceof ServiceConfigError) {
      process.stderr.write(`dmfr serve: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  return 0;
}
