import { randomBytes } from 'node:crypto';

/** A run id that sorts by start time: r-YYYYMMDD-HHMMSS-<4 hex>. */
export function newRunId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r-${t}-${randomBytes(2).toString('hex')}`;
}

/** The per-run HMAC key: 32 random bytes, handed to the ranks as 64 hex characters. */
export function newKey(): Buffer {
  return randomBytes(32);
}
