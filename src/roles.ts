import type { RoleContext, RoleHandle } from './shared/role.js';

/** The roles and how they start: what `meterflow <role>`, `meterflow all`, the demo and the quality gate run. */

export type RoleName = 'ingest' | 'stream' | 'alerts' | 'billing' | 'api';
export const ROLES: readonly RoleName[] = ['ingest', 'stream', 'alerts', 'billing', 'api'];

/** Role entry points, loaded on demand so one role's dependencies never slow another's start. */
export async function startRole(name: RoleName, ctx: RoleContext): Promise<RoleHandle> {
  switch (name) {
    case 'ingest':
      return (await import('./ingest/main.js')).startIngest(ctx);
    case 'stream':
      return (await import('./stream/main.js')).startStream(ctx);
    case 'alerts':
      return (await import('./alerts/main.js')).startAlerts(ctx);
    case 'billing':
      return (await import('./billing/main.js')).startBilling(ctx);
    case 'api':
      return (await import('./api/main.js')).startApi(ctx);
  }
}

/** Starts roles in order; on failure closes the ones already started. Returns a closer (reverse order). */
export async function startRoles(names: readonly RoleName[], ctx: RoleContext): Promise<() => Promise<void>> {
  const handles: RoleHandle[] = [];
  try {
    for (const n of names) handles.push(await startRole(n, ctx));
  } catch (err) {
    for (const h of handles.reverse()) await h.close().catch(() => undefined);
    throw err;
  }
  return async () => {
    for (const h of [...handles].reverse()) await h.close();
  };
}
