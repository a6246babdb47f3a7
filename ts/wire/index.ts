export * from './schemas.ts';
export * from './reject.ts';
export * from './buffers.ts';
export * from './frame.ts';
export * from './queue.ts';
export * from './link.ts';
