export * from './store.ts';
export { MIGRATIONS } from './migrations.ts';
export * from './metric-names.ts';
