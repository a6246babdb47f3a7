// What every `dmfr` verb shares: a usage error (exit 2 with the verb's usage, ts/cli/main.ts)
// and strict argument parsing that reports a bad flag as one.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {}

/** `parseArgs` in strict mode with positionals; an unknown or malformed flag is a UsageError. */
export function parseCommandLine<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, strict: true, options });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The flags that build a run config, shared by `dmfr run` and `dmfr exp create` (ts/config/load.ts). */
export const CONFIG_OPTIONS = {
  preset: { type: 'string' },
  method: { type: 'string' },
  steps: { type: 'string' },
  nproc: { type: 'string' },
  set: { type: 'string', multiple: true },
} as const;
