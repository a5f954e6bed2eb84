// keypath.ts — key paths into a run config, e.g. ['adapter', 'levels', 2, 'rank'] written `adapter.levels[2].rank`.

/** A key path into the config, e.g. ['adapter', 'levels', 2, 'rank']. */
export type KeyPath = readonly (string | number)[];

/** `adapter.levels[2].rank` for ['adapter', 'levels', 2, 'rank']; '' for the top level. */
export function formatKeyPath(key: KeyPath): string {
  return key.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

/** The key path of a JSON pointer such as ajv's instancePath (`/adapter/levels/2/rank`). */
export function keyPathOfPointer(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}
