// The `dmfr` command. `run` is handled here (the TypeScript controller); every other verb (data,
// eval, analyze, model, export, embed, …) is forwarded to `python -m dmfr.cli`.
import { ConfigError } from '../config/load.ts';
import { SamplerError } from '../sampler/index.ts';
import { log } from '../log.ts';
import { forwardToPython } from './forward.ts';
import { RUN_USAGE, runCommand, UsageError } from './run.ts';

const USAGE = `usage: dmfr VERB [ARGS…]

  run        train one experiment (${'`dmfr run --help`'})
  data, eval, analyze, model, export, embed, …
             forwarded to \`python -m dmfr.cli VERB\`
`;

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write(USAGE);
    return verb === undefined ? 2 : 0;
  }
  if (verb !== 'run') return forwardToPython(argv);
  try {
    return await runCommand(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`dmfr run: ${e.message}\n${RUN_USAGE}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`dmfr run: invalid config:\n${e.message.split('\n').map((l) => `  ${l}`).join('\n')}\n`);
      return 2;
    }
    if (e instanceof SamplerError) {
      process.stderr.write(`dmfr run: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

// The CLI shows a progress bar; only warnings and errors are logged unless asked for.
log.level = process.env.DMFR_LOG_LEVEL ?? 'warn';
const code = await main(process.argv.slice(2));
process.exitCode = code;
