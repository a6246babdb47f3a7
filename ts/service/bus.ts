// Store writes that are also live events: each appended event row is published to the
// subscribers of its experiment (SSE streams, the SDK's iterator) with its row id as event id.
import { EventEmitter } from 'node:events';
import type { EventRow, ServiceStore } from './db.ts';

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor(readonly store: ServiceStore) {
    this.emitter.setMaxListeners(0); // one listener per SSE client
  }

  publish(experimentId: string, id: number): void {
    const [row] = this.store.eventsAfter(experimentId, id - 1, 1);
    if (row) this.emitter.emit(experimentId, row);
  }

  subscribe(experimentId: string, listener: (row: EventRow) => void): () => void {
    this.emitter.on(experimentId, listener);
    return () => this.emitter.off(experimentId, listener);
  }
}
