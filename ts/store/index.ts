export * from './store.ts';
export { MIGRATIONS } from './migrations.ts';
