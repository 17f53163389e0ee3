import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/**
 * docs/scaling.md is part hand-written (sizing, several ingest instances, InfluxDB beyond one node) and part
 * measured: `npm run bench:scaling` rewrites only the text between these two markers.
 */
export const SCALING_START = '<!-- bench:scaling:start -->';
export const SCALING_END = '<!-- bench:scaling:end -->';

export class ScalingDocError extends Error {
  override name = 'ScalingDocError';
}

/** `doc` with the text between the markers replaced by `generated`; everything outside them is kept byte for byte. */
export function spliceGenerated(doc: string, generated: string): string {
  const start = doc.indexOf(SCALING_START);
  const end = doc.indexOf(SCALING_END);
  if (start < 0 || end < 0) throw new ScalingDocError(`the measured section's markers are missing: ${SCALING_START} … ${SCALING_END}`);
  if (end < start) throw new ScalingDocError(`${SCALING_END} comes before ${SCALING_START}`);
  if (doc.indexOf(SCALING_START, start + 1) >= 0 || doc.indexOf(SCALING_END, end + 1) >= 0) {
    throw new ScalingDocError('the measured section markers appear more than once');
  }
  return `${doc.slice(0, start + SCALING_START.length)}\n${generated.trim()}\n${doc.slice(end)}`;
}

/**
 * Writes the measured section into `file`: between the markers of an existing document (never touching the rest),
 * or, when there is no document yet, a new one holding just the section. An existing document without the
 * markers is an error, not overwritten.
 */
export function writeGeneratedSection(file: string, generated: string, title = '# Scaling'): void {
  const doc = existsSync(file) ? readFileSync(file, 'utf8') : `${title}\n\n${SCALING_START}\n${SCALING_END}\n`;
  writeFileSync(file, spliceGenerated(doc, generated));
}
