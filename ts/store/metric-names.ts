// One naming of a step's metrics for every place that stores or serves them (docs/protocol.md,
// "Metrics records"): the run store and the service store keep flat names with the method's loss
// terms under `terms.` (`terms.L_cls`); the wire, the SSE `metrics` events and the exports
// (`dmfr runs metrics`) nest them as `{"terms": {"L_cls": …}}`. These two functions are the only
// conversion between the two shapes.
export const TERMS_PREFIX = 'terms.';

export interface NestedMetrics {
  [name: string]: number | null | Record<string, number | null>;
  terms: Record<string, number | null>;
}

/** A `metrics` body's values under their stored names (the step itself is not a value). */
export function flattenMetrics(body: { terms?: Record<string, number | null> } & Record<string, unknown>): Record<string, number | null> {
  const values: Record<string, number | null> = {};
  for (const [name, value] of Object.entries(body)) {
    if (name === 'step' || name === 'terms') continue;
    if (typeof value === 'number' || value === null) values[name] = value;
  }
  for (const [term, value] of Object.entries(body.terms ?? {})) values[`${TERMS_PREFIX}${term}`] = value;
  return values;
}

/** Stored names back to the nested record: `terms.X` under `terms`, the rest at the top level. */
export function nestMetrics(values: Record<string, number | null>): NestedMetrics {
  const out: NestedMetrics = { terms: {} };
  for (const [name, value] of Object.entries(values)) {
    if (name.startsWith(TERMS_PREFIX)) out.terms[name.slice(TERMS_PREFIX.length)] = value;
    else out[name] = value;
  }
  return out;
}
