// Experiment states and their legal transitions, modelled on Determined's experiment states:
// QUEUED → STARTING → RUNNING ⇄ (PAUSING → PAUSED → RESUMING), RESTARTING, and the three
// STOPPING_* states that settle into COMPLETED | CANCELED | ERROR.
export const STATES = [
  'QUEUED',
  'STARTING',
  'RUNNING',
  'PAUSING',
  'PAUSED',
  'RESUMING',
  'RESTARTING',
  'STOPPING_COMPLETED',
  'STOPPING_CANCELED',
  'STOPPING_ERROR',
  'COMPLETED',
  'CANCELED',
  'ERROR',
] as const;

export type State = (typeof STATES)[number];

export const TERMINAL: ReadonlySet<State> = new Set(['COMPLETED', 'CANCELED', 'ERROR']);

const NEXT: Record<State, readonly State[]> = {
  // STOPPING_ERROR: a queued run that no device set of this host can hold any more (reconciliation).
  QUEUED: ['STARTING', 'STOPPING_CANCELED', 'STOPPING_ERROR'],
  STARTING: ['RUNNING', 'STOPPING_CANCELED', 'STOPPING_ERROR', 'RESTARTING'],
  RUNNING: ['PAUSING', 'RESTARTING', 'STOPPING_COMPLETED', 'STOPPING_CANCELED', 'STOPPING_ERROR'],
  PAUSING: ['PAUSED', 'STOPPING_CANCELED', 'STOPPING_ERROR'],
  PAUSED: ['RESUMING', 'STOPPING_CANCELED'],
  RESUMING: ['STARTING', 'STOPPING_CANCELED', 'STOPPING_ERROR'],
  RESTARTING: ['STARTING', 'STOPPING_CANCELED', 'STOPPING_ERROR'],
  STOPPING_COMPLETED: ['COMPLETED', 'STOPPING_ERROR'],
  STOPPING_CANCELED: ['CANCELED', 'STOPPING_ERROR'],
  STOPPING_ERROR: ['ERROR'],
  COMPLETED: [],
  CANCELED: [],
  ERROR: [],
};

export function canTransition(from: State, to: State): boolean {
  return NEXT[from].includes(to);
}

export class IllegalTransition extends Error {
  constructor(
    readonly from: State,
    readonly to: State,
  ) {
    super(`illegal transition ${from} → ${to}`);
  }
}

export function assertTransition(from: State, to: State): void {
  if (!canTransition(from, to)) throw new IllegalTransition(from, to);
}

/** States in which ranks may be alive (a controller restart must reconcile these). */
export const ACTIVE: ReadonlySet<State> = new Set([
  'STARTING',
  'RUNNING',
  'PAUSING',
  'RESUMING',
  'RESTARTING',
  'STOPPING_COMPLETED',
  'STOPPING_CANCELED',
  'STOPPING_ERROR',
]);
