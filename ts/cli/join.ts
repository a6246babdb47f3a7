// `dmfr join`: start this host's ranks of a multi-node run whose node 0 runs elsewhere
// (docs/multinode.md). Two ways:
//   dmfr join JOIN.json --node-rank K       once, from the join file `dmfr run` wrote;
//   dmfr join --experiment ID --node-rank K  an agent for a `dmfr serve` experiment: it joins
//       every attempt (the first launch, each restart and resume) until the experiment ends.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchRanks } from '../controller/launch.ts';
import { readJoinInfo, type JoinInfo } from '../controller/nodes.ts';
import { terminate } from '../controller/processes.ts';
import { ApiRequestError, Client } from '../sdk/client.ts';
import { TERMINAL, type State } from '../service/states.ts';
import { parseCommandLine, UsageError } from './usage.ts';

export const JOIN_USAGE = `usage: dmfr join JOIN.json --node-rank K [--log-dir DIR]
       dmfr join --experiment ID --node-rank K [--server URL] [--token T] [--log-dir DIR]
  JOIN.json is <run_dir>/join.json of the run (it holds the run's key: copy it privately);
  K is this node's rank, 1 … nnodes-1.
  --experiment: follow a multi-node experiment of \`dmfr serve\` and join each of its attempts
  (first launch, restarts, resumes) until it ends; exits 0 then. --server defaults to
  $DMFR_SERVER or http://127.0.0.1:8080, --token to $DMFR_TOKEN.
  Rank logs go to --log-dir (default: beside JOIN.json; with --experiment, a new temporary folder).`;

const POLL_MS = 1000;
/** States in which no attempt runs and none starts until someone acts. */
const SETTLED: ReadonlySet<string> = new Set(['QUEUED', 'PAUSED']);
/** The service may restart (it reconciles its experiments): keep trying this long before giving up. */
const UNREACHABLE_GIVE_UP_MS = 120_000;

interface NodeRun {
  runId: string;
  /** Resolves with torchrun's exit code. */
  done: Promise<number>;
  /** SIGTERM → grace → SIGKILL for this node's torchrun and its ranks. */
  stop(): Promise<void>;
}

/** Start this node's torchrun for one attempt. */
function startNode(info: JoinInfo, nodeRank: number, logDir: string): NodeRun {
  const launched = launchRanks({
    nproc: info.nproc_per_node,
    threadsPerRank: info.threads_per_rank,
    logFile: join(logDir, `ranks-node${nodeRank}.log`),
    node: { nnodes: info.nnodes, nodeRank, masterAddr: info.master_addr, masterPort: info.master_port },
    env: {
      DMFR_CONTROL_ENDPOINT: info.control,
      DMFR_EVENTS_ENDPOINT: info.events,
      DMFR_RUN_ID: info.run_id,
      DMFR_KEY: info.key,
      DMFR_DEVICE: info.device,
      ...(info.curve_server_key ? { DMFR_CURVE_SERVER_KEY: info.curve_server_key } : {}),
    },
  });
  process.stderr.write(`dmfr join: node ${nodeRank}/${info.nnodes} of run ${info.run_id}: ${info.nproc_per_node} rank(s) started\n`);
  const done = new Promise<number>((resolve) => launched.child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 + 15 : 1)))).then((code) => {
    if (code !== 0) process.stderr.write(`dmfr join: torchrun exited with ${code}; last lines:\n${launched.tail().slice(-10).join('\n')}\n`);
    return code;
  });
  return { runId: info.run_id, done, stop: async () => void (await terminate({ runId: info.run_id, groups: [launched.child.pid!] }, 10)) };
}

/** One attempt from a join file; a signal stops its ranks. */
async function runNode(info: JoinInfo, nodeRank: number, logDir: string): Promise<number> {
  const node = startNode(info, nodeRank, logDir);
  const stop = () => void node.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await node.done;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return code;
}

function checkNodeRank(raw: string | undefined, nnodes: number): number {
  const nodeRank = Number(raw);
  if (!Number.isInteger(nodeRank) || nodeRank < 1 || nodeRank >= nnodes) {
    throw new UsageError(`--node-rank: expected 1 … ${nnodes - 1}, got '${raw ?? ''}'`);
  }
  return nodeRank;
}

/** What the agent sees of the experiment at one poll. */
type Seen =
  | { kind: 'ended'; state: string }
  | { kind: 'attempt'; state: string; info: JoinInfo | null } // null: no attempt to join now (queued, restarting, paused, stopping…)
  | { kind: 'gone'; code: number; message: string }
  | { kind: 'unreachable'; why: string };

// A restarting service, or the reverse proxy in front of it, answers 5xx or not at all.
const transient = (e: unknown): string | null =>
  e instanceof ApiRequestError && e.status >= 500
    ? e.message
    : e instanceof TypeError && /fetch failed/.test(e.message)
      ? ((e.cause as Error | undefined)?.message ?? e.message)
      : null;

async function look(client: Client, id: string): Promise<Seen> {
  try {
    const exp = await client.getExperiment(id);
    if (TERMINAL.has(exp.state as State)) return { kind: 'ended', state: exp.state };
    try {
      return { kind: 'attempt', state: exp.state, info: await client.joinInfo(id) };
    } catch (e) {
      if (e instanceof ApiRequestError && e.status === 409) return { kind: 'attempt', state: exp.state, info: null };
      throw e;
    }
  } catch (e) {
    const why = transient(e);
    if (why !== null) return { kind: 'unreachable', why };
    if (e instanceof ApiRequestError) return { kind: 'gone', code: e.status === 404 ? 4 : 1, message: e.message };
    throw e;
  }
}

/** The agent: join each attempt of the experiment once, leave an attempt the service has moved
 *  on from, and stop when the experiment ends. */
async function followExperiment(client: Client, id: string, rawRank: string | undefined, logDir: string): Promise<number> {
  if (!/^[1-9][0-9]*$/.test(rawRank ?? '')) throw new UsageError(`--node-rank: expected an integer ≥ 1, got '${rawRank ?? ''}'`);
  const joined = new Set<string>();
  let node: (NodeRun & { exited: boolean; stopping: boolean }) | null = null;
  let signal: NodeJS.Signals | null = null;
  /** Stop this node's ranks of the current attempt, once. */
  const stopNode = async (why: string) => {
    if (!node || node.exited || node.stopping) return;
    node.stopping = true;
    process.stderr.write(`dmfr join: leaving run ${node.runId}: ${why}\n`);
    await node.stop();
  };
  const onSignal = (s: NodeJS.Signals) => {
    signal = s;
    void stopNode(s);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const leave = async (why: string) => {
    if (!node) return;
    await stopNode(why);
    await node.done;
    node = null;
  };
  let unreachableSince: number | null = null;
  try {
    while (signal === null) {
      const seen = await look(client, id);
      if (seen.kind === 'unreachable') {
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > UNREACHABLE_GIVE_UP_MS) {
          await leave('the service is unreachable');
          process.stderr.write(`dmfr join: cannot reach the service (${seen.why}) for ${UNREACHABLE_GIVE_UP_MS / 1000} s; giving up\n`);
          return 1;
        }
      } else {
        unreachableSince = null;
      }
      if (seen.kind === 'gone') {
        await leave('the experiment is gone');
        process.stderr.write(`dmfr join: experiment ${id}: ${seen.message}\n`);
        return seen.code;
      }
      if (seen.kind === 'ended') {
        await leave(`the experiment ended ${seen.state}`);
        process.stderr.write(`dmfr join: experiment ${id} ended ${seen.state}\n`);
        return 0;
      }
      if (seen.kind === 'attempt') {
        // The service has settled the attempt this node runs (a newer attempt is live, or none is
        // and none is coming soon): do not wait for its ranks to notice, the next attempt's node 0
        // is waiting for this node. While it is only stopping (a checkpoint, a pause), let it finish.
        if (node && ((seen.info && seen.info.run_id !== node.runId) || SETTLED.has(seen.state))) await leave('the service moved on from it');
        if (!node && seen.info && !joined.has(seen.info.run_id) && signal === null) {
          joined.add(seen.info.run_id);
          const started = startNode(seen.info, checkNodeRank(rawRank, seen.info.nnodes), logDir);
          const tracked = { ...started, exited: false, stopping: false };
          void started.done.then((code) => {
            tracked.exited = true;
            process.stderr.write(`dmfr join: run ${started.runId} ended on this node (torchrun exit ${code})\n`);
          });
          node = tracked;
        }
      }
      if (node?.exited) node = null;
      await sleep(POLL_MS);
    }
    await leave(`${signal}`);
    return signal === 'SIGTERM' ? 143 : 130;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The flags of `dmfr join` (test/ts/readme-commands.test.ts checks the docs against them). */
export const joinOptions = () =>
  ({
    'node-rank': { type: 'string' },
    experiment: { type: 'string' },
    server: { type: 'string', default: process.env.DMFR_SERVER ?? 'http://127.0.0.1:8080' },
    token: { type: 'string' },
    'log-dir': { type: 'string' },
  }) as const;

export async function joinCommand(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, joinOptions());
  const v = parsed.values;
  if (v.experiment !== undefined) {
    if (parsed.positionals.length) throw new UsageError('give either a join file or --experiment, not both');
    const client = new Client(v.server!, { token: v.token ?? process.env.DMFR_TOKEN });
    const logDir = v['log-dir'] ?? mkdtempSync(join(tmpdir(), 'dmfr-join-'));
    process.stderr.write(`dmfr join: following experiment ${v.experiment} on ${v.server}; rank logs in ${logDir}\n`);
    return followExperiment(client, v.experiment, v['node-rank'], logDir);
  }
  const file = parsed.positionals[0];
  if (!file || parsed.positionals.length > 1) throw new UsageError('expected one join file (or --experiment ID)');
  let info;
  try {
    info = readJoinInfo(file);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const nodeRank = checkNodeRank(v['node-rank'], info.nnodes);
  return runNode(info, nodeRank, v['log-dir'] ?? dirname(file));
}
