// `dmfr join JOIN.json --node-rank K`: start this host's ranks of a multi-node run that
// `dmfr run` (or the service) started elsewhere, from the join file it wrote (docs/multinode.md).
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchRanks } from '../controller/launch.ts';
import { readJoinInfo } from '../controller/nodes.ts';
import { terminate } from '../controller/processes.ts';
import { UsageError } from './run.ts';

export const JOIN_USAGE = `usage: dmfr join JOIN.json --node-rank K
  JOIN.json is <run_dir>/join.json of the run (it holds the run's key: copy it privately);
  K is this node's rank, 1 … nnodes-1.`;

export async function joinCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { 'node-rank': { type: 'string' } } });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const file = parsed.positionals[0];
  if (!file || parsed.positionals.length > 1) throw new UsageError('expected one join file');
  let info;
  try {
    info = readJoinInfo(file);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const nodeRank = Number(parsed.values['node-rank']);
  if (!Number.isInteger(nodeRank) || nodeRank < 1 || nodeRank >= info.nnodes) {
    throw new UsageError(`--node-rank: expected 1 … ${info.nnodes - 1}, got '${parsed.values['node-rank'] ?? ''}'`);
  }
  const launched = launchRanks({
    nproc: info.nproc_per_node,
    threadsPerRank: info.threads_per_rank,
    logFile: join(dirname(file), `ranks-node${nodeRank}.log`),
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
