// `dmfr exp create|list|get|stop|pause|resume|restart|logs … --server URL`: the client verbs
// against a running `dmfr serve`, through the typed SDK (ts/sdk/client.ts).
import { readConfigFile } from '../config/load.ts';
import { ApiRequestError, Client, type ExperimentInfo } from '../sdk/client.ts';
import { CONFIG_OPTIONS, parseCommandLine, UsageError } from './usage.ts';

export const EXP_USAGE = `usage: dmfr exp VERB [ARGS] [--server URL] [--token T] [--json]
  create [CONFIG.yaml|json] [--preset P] [--method M] [--steps N] [--nproc N] [--set k=v]...
         [--name NAME] [--priority N] [--max-restarts N] [--follow]
  list [--state STATE]
  get ID | stop ID | pause ID | resume ID | restart ID
  logs ID [--follow]        events (states, metrics, checkpoints, logs); --follow waits for the end
  --server defaults to $DMFR_SERVER or http://127.0.0.1:8080; --token to $DMFR_TOKEN.`;

const line = (e: ExperimentInfo) => `${e.id}  ${e.state.padEnd(18)} ${e.name}${e.cause ? `  (${e.cause})` : ''}`;

/** The flags of every `dmfr exp` verb (test/ts/readme-commands.test.ts checks the docs against them). */
export const expOptions = () =>
  ({
    server: { type: 'string', default: process.env.DMFR_SERVER ?? 'http://127.0.0.1:8080' },
    token: { type: 'string' },
    json: { type: 'boolean', default: false },
    follow: { type: 'boolean', default: false },
    ...CONFIG_OPTIONS,
    name: { type: 'string' },
    priority: { type: 'string' },
    'max-restarts': { type: 'string' },
    state: { type: 'string' },
  }) as const;

export async function expCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  const { values: v, positionals } = parseCommandLine(rest, expOptions());
  const client = new Client(v.server, { token: v.token ?? process.env.DMFR_TOKEN });
  const print = (obj: unknown, text: string) => process.stdout.write(v.json ? `${JSON.stringify(obj)}\n` : `${text}\n`);
  const int = (flag: string, s: string | undefined) => {
    if (s === undefined) return undefined;
    if (!/^-?[0-9]+$/.test(s)) throw new UsageError(`--${flag}: expected an integer, got '${s}'`);
    return Number(s);
  };
  const id = () => {
    if (positionals.length !== 1) throw new UsageError(`exp ${verb}: expected one experiment id`);
    return positionals[0]!;
  };
  try {
    switch (verb) {
      case 'create': {
        const e = await client.createExperiment({
          config: positionals[0] ? readConfigFile(positionals[0]) : undefined,
          preset: v.preset,
          method: v.method,
          steps: int('steps', v.steps),
          nproc: int('nproc', v.nproc),
          set: v.set,
          name: v.name,
          priority: int('priority', v.priority),
          max_restarts: int('max-restarts', v['max-restarts']),
        });
        print(e, line(e));
        return v.follow ? follow(client, e.id, v.json) : 0;
      }
      case 'list': {
        const { items } = await client.listExperiments({ state: v.state });
        print(items, items.map(line).join('\n'));
        return 0;
      }
      case 'get': {
        const e = await client.getExperiment(id());
        print(e, `${line(e)}\n${JSON.stringify(e.summary ?? {}, null, 2)}`);
        return 0;
      }
      case 'stop':
      case 'pause':
      case 'resume':
      case 'restart': {
        const e = await client[verb](id());
        print(e, line(e));
        return 0;
      }
      case 'logs':
        return follow(client, id(), v.json, !v.follow);
      default:
        throw new UsageError(`unknown exp verb '${verb ?? ''}'\n${EXP_USAGE}`);
    }
  } catch (e) {
    if (e instanceof ApiRequestError) {
      process.stderr.write(`dmfr exp ${verb}: ${e.message}\n`);
      return e.status === 404 ? 4 : 1;
    }
    if (e instanceof TypeError && /fetch failed/.test(e.message)) {
      process.stderr.write(`dmfr exp ${verb}: cannot reach ${v.server} (${(e.cause as Error | undefined)?.message ?? e.message})\n`);
      return 1;
    }
    throw e;
  }
}

/** Print events; with `once`, only those stored so far. Exit code from the terminal state. */
async function follow(client: Client, id: string, json: boolean, once = false): Promise<number> {
  const controller = new AbortController();
  let final: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  if (once) timer = setTimeout(() => controller.abort(), 1500);
  try {
    for await (const ev of client.events(id, { signal: controller.signal })) {
      if (once) timer?.refresh();
      if (json) process.stdout.write(`${JSON.stringify(ev)}\n`);
      else if (ev.kind === 'state') process.stdout.write(`[${ev.id}] state ${ev.data.from ?? '∅'} → ${ev.data.to}${ev.data.cause ? ` (${ev.data.cause})` : ''}\n`);
      else if (ev.kind === 'metrics') process.stdout.write(`[${ev.id}] step ${ev.data.step} loss ${Number(ev.data.loss).toFixed(4)}\n`);
      else if (ev.kind === 'log') process.stdout.write(`[${ev.id}] ${ev.data.message}\n`);
      else process.stdout.write(`[${ev.id}] ${ev.kind} ${JSON.stringify(ev.data)}\n`);
      if (ev.kind === 'state') final = String(ev.data.to);
    }
  } catch (e) {
    if (!(e instanceof Error && e.name === 'AbortError')) throw e;
  } finally {
    clearTimeout(timer);
  }
  if (once) return 0;
  return final === 'COMPLETED' ? 0 : final === 'CANCELED' ? 130 : 1;
}
