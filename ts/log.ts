// The package's logger: pino, JSON lines on stderr (stdout is reserved for `--json` results).
// DMFR_LOG_LEVEL sets the level (default: info).
import pino from 'pino';

export const log = pino(
  { name: 'dmfr', level: process.env.DMFR_LOG_LEVEL ?? 'info' },
  pino.destination({ fd: 2, sync: true }),
);
export type Logger = pino.Logger;
