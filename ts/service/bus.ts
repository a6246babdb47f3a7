// Store writes that are also live events: each committed event row is published to the
// subscribers of its experiment (SSE streams, the SDK's iterator) with its row id as event id.
import { EventEmitter } from 'node:events';
import type { EventRow } from './db.ts';

/** The channel of every event; not an experiment id (ids match ExperimentId, which has no '*'). */
const ALL = Symbol('all');

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0); // one listener per SSE client
  }

  /** Publish an event the store has just committed (as its write methods return it). */
  publish(row: EventRow): void {
    this.emitter.emit(row.experiment_id, row);
    this.emitter.emit(ALL, row);
  }

  /** Every experiment's events (the study manager follows its cells' experiments this way). */
  subscribeAll(listener: (row: EventRow) => void): () => void {
    this.emitter.on(ALL, listener);
    return () => this.emitter.off(ALL, listener);
  }

  subscribe(experimentId: string, listener: (row: EventRow) => void): () => void {
    this.emitter.on(experimentId, listener);
    return () => this.emitter.off(experimentId, listener);
  }
}
