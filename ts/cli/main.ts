// The `dmfr` command. `run` is handled here (the TypeScript controller); every other verb (data,
// eval, analyze, model, export, embed, …) is forwarded to `python -m dmfr.cli`.
import { ConfigError } from '../config/load.ts';
import { SamplerError } from '../sampler/index.ts';
import { log } from '../log.ts';
import { forwardToPython } from './forward.ts';
import { EXP_USAGE, expCommand } from './exp.ts';
import { JOIN_USAGE, joinCommand } from './join.ts';
import { RUN_USAGE, runCommand } from './run.ts';
import { UsageError } from './usage.ts';
import { SERVE_USAGE, serveCommand } from './serve.ts';
import { STUDY_USAGE, studyCommand } from './study.ts';

const USAGE = `usage: dmfr VERB [ARGS…]

  run        train one experiment (${'`dmfr run --help`'})
  serve      the HTTP service: experiments, live metrics, checkpoints (${'`dmfr serve --help`'})
  exp        client verbs against a server: create, list, get, stop, pause, resume, logs
  join       start this host's ranks of a multi-node run (${'`dmfr join --help`'})
  study      designed experiments: run, report, status (${'`dmfr study --help`'})
  data, eval, analyze, model, export, embed, runs, …
             forwarded to \`python -m dmfr.cli VERB\`
`;

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write(USAGE);
    return verb === undefined ? 2 : 0;
  }
  const own: Record<string, [(args: string[]) => Promise<number>, string]> = {
    run: [runCommand, RUN_USAGE],
    serve: [serveCommand, SERVE_USAGE],
    exp: [expCommand, EXP_USAGE],
    join: [joinCommand, JOIN_USAGE],
    study: [studyCommand, STUDY_USAGE],
  };
  const handler = own[verb];
  if (!handler) return forwardToPython(argv);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${handler[1]}\n`);
    return 0;
  }
  try {
    return await handler[0](rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`dmfr ${verb}: ${e.message}\n${handler[1]}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`dmfr ${verb}: invalid config:\n${e.message.split('\n').map((l) => `  ${l}`).join('\n')}\n`);
      return 2;
    }
    if (e instanceof SamplerError) {
      process.stderr.write(`dmfr ${verb}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

// The CLI shows a progress bar; only warnings and errors are logged unless asked for.
log.level = process.env.DMFR_LOG_LEVEL ?? 'warn';
const code = await main(process.argv.slice(2));
process.exitCode = code;
