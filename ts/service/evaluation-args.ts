// An evaluation request's typed `args` (schemas.ts EvaluationArgs) as `dmfr eval <protocol>`
// arguments: only the fields the protocol takes (python/dmfr/cli/eval.py), its required ones
// present, every file confined to the data roots. The service adds --checkpoint and --json itself.
import { badRequest } from './errors.ts';
import { confinedPath } from './paths.ts';
import type { EvaluationArgs } from './schemas.ts';

export type Protocol = 'verification' | 'templates' | 'identification';
type Field = keyof EvaluationArgs;

const FILES: ReadonlySet<Field> = new Set(['bin', 'pairs', 'images', 'media', 'attributes', 'probes', 'gallery', 'distractors']);

/** Per protocol: the fields it takes, and groups of which exactly one (one-element: that one) is required. */
const PROTOCOLS: Record<Protocol, { fields: readonly Field[]; required: readonly (readonly Field[])[] }> = {
  verification: { fields: ['bin', 'pairs', 'images', 'folds', 'pca', 'batch_size'], required: [['bin', 'pairs']] },
  templates: {
    fields: ['media', 'pairs', 'images', 'no_norm_weight', 'detector_weight', 'fars', 'attributes', 'rule', 'gallery_threshold', 'probe_threshold', 'batch_size'],
    required: [['media'], ['pairs']],
  },
  identification: { fields: ['probes', 'gallery', 'distractors', 'images', 'max_rank', 'fpirs', 'batch_size'], required: [['probes'], ['gallery']] },
};

const flag = (field: string) => `--${field.replaceAll('_', '-')}`;

export function evaluationCliArgs(protocol: Protocol, args: EvaluationArgs, roots: readonly string[]): string[] {
  const spec = PROTOCOLS[protocol];
  for (const field of Object.keys(args)) {
    if (!spec.fields.includes(field as Field)) throw badRequest(`args.${field}: not an option of ${protocol} (it takes ${spec.fields.join(', ')})`);
  }
  for (const group of spec.required) {
    const given = group.filter((f) => args[f] !== undefined);
    if (given.length === 0) throw badRequest(`args.${group.join(' or args.')}: required by ${protocol}`);
    if (given.length > 1) throw badRequest(`args.${given.join(' and args.')}: give one of them`);
  }
  const out: string[] = [];
  for (const field of spec.fields) {
    const value = args[field];
    if (value === undefined || value === false) continue;
    if (value === true) out.push(flag(field));
    else if (FILES.has(field)) out.push(flag(field), confinedPath(roots, value as string, `args.${field}`));
    else if (Array.isArray(value)) out.push(flag(field), value.join(','));
    else out.push(flag(field), String(value));
  }
  return out;
}
