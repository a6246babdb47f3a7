// Paths a client names (a dataset to register, an evaluation's input files) are confined to the
// service's data roots (`dmfr serve --data-root DIR`, default the data directory), judged after
// resolving symlinks, so that the API can read nothing else on the host (issue #12, item 5).
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { badRequest } from './errors.ts';

function inside(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The real path of `given` (absolute, or relative to the first root) when it exists inside one of
 * `roots`; otherwise a 400 naming `field`. Whether a path outside the roots exists is not told.
 */
export function confinedPath(roots: readonly string[], given: string, field: string): string {
  const realRoots = roots.filter((r) => existsSync(r)).map((r) => realpathSync(r));
  const outside = () => badRequest(`${field}: ${given} lies outside the data roots (${roots.join(', ')})`);
  const candidate = path.resolve(realRoots[0] ?? roots[0] ?? '/', given);
  if (!realRoots.some((r) => inside(r, candidate))) throw outside();
  if (!existsSync(candidate)) throw badRequest(`${field}: ${given} does not exist`);
  const real = realpathSync(candidate);
  if (!realRoots.some((r) => inside(r, real))) throw outside(); // a symlink out of the roots
  return real;
}
