import { BadField } from './day-range.js';

/**
 * Cursor paging over ids in order (meters of billing reads, customers of profiles): the candidates come from a tag
 * index, are fetched a page at a time, and ids without an item are skipped until the page is full. The cursor is the
 * last id returned, opaque to clients.
 */

export interface PageQuery {
  cursor?: string | undefined;
  limit: number;
}

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** Ids per fetch at most: one InfluxDB query names them all in a regex. */
const FETCH_IDS = 1000;

const encodeCursor = (id: string): string => Buffer.from(JSON.stringify({ after: id })).toString('base64url');

function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (v !== null && typeof v === 'object' && 'after' in v && typeof v.after === 'string') return v.after;
  } catch {
    // fall through to the 400
  }
  throw new BadField('querystring.cursor', 'cursor is not one this API returned');
}

/** One page of `limit` items for the sorted `candidates` after the cursor; `fetch` answers id → item for the ids that have one. */
export async function pageByIds<T>(candidates: readonly string[], q: PageQuery, fetch: (ids: string[]) => Promise<ReadonlyMap<string, T>>): Promise<Page<T>> {
  const after = decodeCursor(q.cursor);
  const ids = after === undefined ? candidates : candidates.filter((id) => id > after);
  const items: T[] = [];
  let lastId: string | undefined;
  let i = 0;
  while (i < ids.length && items.length < q.limit) {
    const chunk = ids.slice(i, i + Math.min(q.limit, FETCH_IDS));
    const found = await fetch(chunk);
    for (const id of chunk) {
      i++;
      const item = found.get(id);
      if (item === undefined) continue;
      items.push(item);
      lastId = id;
      if (items.length === q.limit) break;
    }
  }
  return { items, nextCursor: i < ids.length && lastId !== undefined ? encodeCursor(lastId) : null };
}
