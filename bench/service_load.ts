// A bounded load test of `dmfr serve` on loopback: 100 SSE clients follow a live run while a
// pool of keep-alive clients sends GET requests for a fixed time; prints requests/s and latency
// percentiles (target: ≥ 1,000 GET/s with p99 < 20 ms), and what the SSE clients received.
//   npx tsx bench/service_load.ts [--seconds 10] [--sse 100] [--concurrency 16] [--nproc 1]
// The live run trains on this machine's cores too; on a 2-core box give it one rank (--nproc 1).
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../ts/controller/launch.ts';
import { Client } from '../ts/sdk/client.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    sse: { type: 'string', default: '100' },
    concurrency: { type: 'string', default: '16' },
    nproc: { type: 'string', default: '1' },
    'max-requests': { type: 'string', default: '200000' },
  },
});
const seconds = Number(values.seconds);
const sseClients = Number(values.sse);
const concurrency = Number(values.concurrency);
const maxRequests = Number(values['max-requests']);

const dataDir = mkdtempSync(path.join(tmpdir(), 'dmfr-load-'));
const server = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/dmfr.js'), 'serve', '--port', '0', '--data-dir', dataDir], {
  env: { ...process.env, DMFR_LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'ignore', 'pipe'],
});
const url = await new Promise<string>((resolve, reject) => {
  let err = '';
  server.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    const m = /listening on (http:\/\/[^\s]+)/.exec(err);
    if (m) resolve(m[1]!);
  });
  server.on('exit', (code) => reject(new Error(`dmfr serve exited with ${code}: ${err}`)));
});
const { hostname, port } = new URL(url);
const client = new Client(url);

try {
  const exp = await client.createExperiment({
    preset: 'quick',
    nproc: Number(values.nproc),
    steps: 1_000_000,
    set: ['runtime.threads_per_rank=1', `train.batch_size=${32 * Number(values.nproc)}`],
    name: 'load',
  });
  for (let t0 = Date.now(); (await client.getExperiment(exp.id)).state !== 'RUNNING'; ) {
    if (Date.now() - t0 > 120_000) throw new Error('the live run did not start');
    await new Promise((r) => setTimeout(r, 200));
  }

  // 100 SSE clients on the live run, each counting the events it receives.
  const sseCounts = new Array<number>(sseClients).fill(0);
  const sseRequests = sseCounts.map((_, i) =>
    http.get({ hostname, port, path: `/experiments/${exp.id}/metrics`, headers: { accept: 'text/event-stream' }, agent: false }, (res) => {
      res.on('data', (d: Buffer) => (sseCounts[i]! += d.toString().split('\n\n').filter((b) => b.includes('\nevent: ')).length));
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));

  // GET load: `concurrency` keep-alive loops for `seconds`, at most `maxRequests` in all.
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const paths = [`/experiments/${exp.id}`, '/experiments?limit=20', `/experiments/${exp.id}/metrics?names=loss&from=0&to=50`];
  const one = (p: string) =>
    new Promise<void>((resolve) => {
      const t = performance.now();
      http
        .get({ hostname, port, path: p, agent }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) latencies.push(performance.now() - t);
            else errors++;
            resolve();
          });
        })
        .on('error', () => (errors++, resolve()));
    });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = w; performance.now() < deadline && latencies.length + errors < maxRequests; i++) await one(paths[i % paths.length]!);
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const sseAlive = sseRequests.filter((r) => !r.destroyed).length;
  for (const r of sseRequests) r.destroy();
  await client.stop(exp.id);

  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const rps = latencies.length / elapsed;
  console.log(`GET: ${latencies.length} ok, ${errors} errors in ${elapsed.toFixed(1)} s → ${rps.toFixed(0)} req/s (target ≥ 1000: ${(rps / 1000).toFixed(2)}×)`);
  console.log(`latency ms: p50 ${q(0.5).toFixed(2)}, p90 ${q(0.9).toFixed(2)}, p99 ${q(0.99).toFixed(2)} (target < 20: ${(q(0.99) / 20).toFixed(2)}× of budget), max ${latencies.at(-1)!.toFixed(1)}`);
  console.log(`SSE: ${sseAlive}/${sseClients} clients connected throughout; events per client min ${Math.min(...sseCounts)}, max ${Math.max(...sseCounts)}`);
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
}
