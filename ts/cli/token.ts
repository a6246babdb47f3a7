// The bearer token of a server-facing verb: the first line of --token-file FILE, else $DMFR_TOKEN
// (never a flag's value, which every user of the host sees in `ps`).
import { readFileSync } from 'node:fs';
import { UsageError } from './usage.ts';

/** The first line of a token file; a UsageError naming the flag when it cannot be read or is empty. */
export function readTokenFile(file: string, flag = '--token-file'): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const token = text.split('\n')[0]!.trim();
  if (!token) throw new UsageError(`${flag}: ${file} has an empty first line`);
  return token;
}

/** --token-file FILE, else $DMFR_TOKEN, else none. */
export function clientToken(tokenFile: string | undefined): string | undefined {
  return tokenFile !== undefined ? readTokenFile(tokenFile) : process.env.DMFR_TOKEN || undefined;
}
