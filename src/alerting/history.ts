import type { AlertChangeKind, AlertHistoryAction, AlertHistoryEntry } from '../contracts/alert.js';
import type { AlertChange } from '../domain/alert-lifecycle.js';
import type { OperatorAction } from '../domain/alert-engine.js';

/**
 * What an alert's history records of a commit: the lifecycle's changes (pipeline or operator) and the operator's
 * own actions. Written by the commit that makes the change (./commit.ts), so history and record never disagree.
 */

export interface HistoryItem {
  alertId: string;
  entry: AlertHistoryEntry;
}

/** Who acts, for operator actions (the API); absent for the pipeline. */
export interface Actor {
  by: string;
  tokenId: string | null;
  comment: string | null;
}

/** History action of a lifecycle change (a flapping alert is one that re-opened). */
const ACTION_OF: Record<AlertChangeKind, AlertHistoryAction> = {
  opened: 'opened',
  escalated: 'escalated',
  flapping: 'reopened',
  reopened: 'reopened',
  acknowledged: 'acknowledged',
  resolved: 'resolved',
};

/** Entries for lifecycle changes, one per change, in order. */
export function changeHistory(changes: readonly AlertChange[], actor: Actor | null = null): HistoryItem[] {
  return changes.map((c) => ({
    alertId: c.alert.id,
    entry: { at: c.at, action: ACTION_OF[c.kind], by: actor?.by ?? null, tokenId: actor?.tokenId ?? null, comment: actor?.comment ?? null },
  }));
}

/**
 * Entries for an operator action on alert `id` at wall time `now`: the changes it made (ack, resolve), the
 * assignment, the comment. An action that changed nothing (acknowledging twice) still keeps its comment.
 */
export function operatorHistory(
  id: string,
  action: OperatorAction,
  changes: readonly AlertChange[],
  assigned: boolean,
  actor: Actor,
  now: number,
): HistoryItem[] {
  const entry = (action: AlertHistoryAction, comment: string | null): AlertHistoryEntry => ({ at: now, action, by: actor.by, tokenId: actor.tokenId, comment });
  const items = changeHistory(changes, actor);
  if (action.kind === 'assign' && assigned) items.push({ alertId: id, entry: { ...entry('assigned', actor.comment), assignee: action.assignee } });
  if (items.length === 0 && actor.comment !== null) items.push({ alertId: id, entry: entry('commented', actor.comment) });
  return items;
}
