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

export const JOIN_USAGE = `usage: dmfr join JOIN.json --node-rank K
       dmfr join --experiment ID --node-rank K [--server URL] [--token T] [--log-dir DIR]
  JOIN.json is <run_dir>/join.json of the run (it holds the run's key: copy it privately);
  K is this node's rank, 1 … nnodes-1.
  --experiment: follow a multi-node experiment of \`dmfr serve\` and join each of its attempts
  (first launch, restarts, resumes) until it ends; exits 0 then. --server defaults to
  $DMFR_SERVER or http://127.0.0.1:8080, --token to $DMFR_TOKEN; rank logs go to --log-dir
  (default: a new temporary folder).`;

const POLL_MS = 1000;
/** The service may restart (it reconciles its experiments): keep trying this long before giving up. */
const UNREACHABLE_GIVE_UP_MS = 120_000;

const unreachable = (e: unknown): e is TypeError => e instanceof TypeError && /fetch failed/.test(e.message);

/** Run this node's torchrun for one attempt; resolves with its exit code. */
async function runNode(info: JoinInfo, nodeRank: number, logDir: string): Promise<number> {
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
  const stop = () => void terminate({ runId: info.run_id, groups: [launched.child.pid!] }, 10);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await new Promise<number>((resolve) => launched.child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 + 15 : 1))));
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (code !== 0) process.stderr.write(`dmfr join: torchrun exited with ${code}; last lines:\n${launched.tail().slice(-10).join('\n')}\n`);
  return code;
}

function checkNodeRank(raw: string | undefined, nnodes: number): number {
  const nodeRank = Number(raw);
  if (!Number.isInteger(nodeRank) || nodeRank < 1 || nodeRank >= nnodes) {
    throw new UsageError(`--node-rank: expected 1 … ${nnodes - 1}, got '${raw ?? ''}'`);
  }
  return nodeRank;
}

/** The agent: poll the experiment; join each attempt once; stop when the experiment ends. */
async function followExperiment(client: Client, id: string, rawRank: string | undefined, logDir: string): Promise<number> {
  const joined = new Set<string>();
  let interrupted = false;
  const onSignal = () => (interrupted = true);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let unreachableSince: number | null = null;
  try {
    while (!interrupted) {
      let exp;
      try {
        exp = await client.getExperiment(id);
        unreachableSince = null;
      } catch (e) {
        if (e instanceof ApiRequestError) {
          process.stderr.write(`dmfr join: experiment ${id}: ${e.message}\n`);
          return e.status === 404 ? 4 : 1;
        }
        if (!unreachable(e)) throw e;
        unreachableSince ??= Date.now();
        if (Date.now() - unreachableSince > UNREACHABLE_GIVE_UP_MS) {
          process.stderr.write(`dmfr join: cannot reach the service (${(e.cause as Error | undefined)?.message ?? e.message}) for ${UNREACHABLE_GIVE_UP_MS / 1000} s; giving up\n`);
          return 1;
        }
        await sleep(POLL_MS);
        continue;
      }
      if (TERMINAL.has(exp.state as State)) {
        process.stderr.write(`dmfr join: experiment ${id} ended ${exp.state}\n`);
        return 0;
      }
      let info: JoinInfo | null = null;
      try {
        info = await client.joinInfo(id);
      } catch (e) {
        // 409 not_joinable: between attempts (queued, restarting, paused) — wait for the next one
        if (!(e instanceof ApiRequestError && e.status === 409) && !unreachable(e)) throw e;
      }
      if (info && !joined.has(info.run_id)) {
        joined.add(info.run_id);
        const code = await runNode(info, checkNodeRank(rawRank, info.nnodes), logDir);
        process.stderr.write(`dmfr join: run ${info.run_id} ended on this node (torchrun exit ${code})\n`);
        continue;
      }
      await sleep(POLL_MS);
    }
    return 130;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function joinCommand(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv, {
    'node-rank': { type: 'string' },
    experiment: { type: 'string' },
    server: { type: 'string', default: process.env.DMFR_SERVER ?? 'http://127.0.0.1:8080' },
    token: { type: 'string' },
    'log-dir': { type: 'string' },
  });
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
