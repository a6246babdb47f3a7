// Opening a dmfr SQLite store: WAL, foreign keys, a busy timeout, and numbered migrations applied
// in order inside a transaction, the applied count kept in `PRAGMA user_version`. A store written
// by a newer dmfr (more migrations than this one knows) is refused, never altered.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

export function openDatabase(path: string, migrations: readonly string[]): Database.Database {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    db.close(); // before anything writes to it: switching to WAL would change the file's header
    throw new Error(`${path} was written by a newer dmfr (schema ${current}; this one knows ${migrations.length})`);
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
