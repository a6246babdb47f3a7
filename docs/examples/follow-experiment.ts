// Launch an experiment on a running `dmfr serve` and follow its live loss until it ends.
//   npx tsx docs/examples/follow-experiment.ts http://127.0.0.1:8080 [method]
import { Client } from '../../ts/index.ts';

const [server = 'http://127.0.0.1:8080', method = 'filter'] = process.argv.slice(2);
const client = new Client(server, { token: process.env.DMFR_TOKEN });

const exp = await client.createExperiment({ preset: 'quick', method, steps: 100, name: `example-${method}` });
console.log(`created ${exp.id} (${exp.state})`);
for await (const event of client.events(exp.id)) {
  if (event.kind === 'state') console.log(`state → ${event.data.to}${event.data.cause ? ` (${event.data.cause})` : ''}`);
  if (event.kind === 'metrics' && Number(event.data.step) % 10 === 0) {
    const terms = Object.entries(event.data).filter(([k]) => k.startsWith('L_') || k === 'KL');
    console.log(`step ${event.data.step}: loss ${Number(event.data.loss).toFixed(4)} ${terms.map(([k, v]) => `${k} ${Number(v).toFixed(4)}`).join(' ')}`);
  }
}
const done = await client.getExperiment(exp.id);
console.log(`${done.state}: ${JSON.stringify(done.summary)}`);
