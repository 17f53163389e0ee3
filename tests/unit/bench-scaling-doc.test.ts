import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SCALING_END, SCALING_START, ScalingDocError, spliceGenerated, writeGeneratedSection } from '../../bench/scaling-doc.js';

const doc = [
  '# Scaling',
  '',
  'Hand-written sizing.',
  '',
  SCALING_START,
  'old table',
  SCALING_END,
  '',
  '## Several ingest instances',
  '',
  'More prose.',
  '',
].join('\n');

describe('docs/scaling.md: the bench rewrites only its measured section', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mf-scaling-doc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the text between the markers and keeps everything else byte for byte', () => {
    const out = spliceGenerated(doc, '\n## Measured\n\n| a |\n');
    expect(out).toBe(
      [
        '# Scaling',
        '',
        'Hand-written sizing.',
        '',
        SCALING_START,
        '## Measured',
        '',
        '| a |',
        SCALING_END,
        '',
        '## Several ingest instances',
        '',
        'More prose.',
        '',
      ].join('\n'),
    );
    // Twice gives the same document.
    expect(spliceGenerated(out, '## Measured\n\n| a |')).toBe(out);
  });

  it('refuses a document whose markers are missing, reversed or repeated', () => {
    const cases = [doc.replace(SCALING_END, ''), doc.replace(SCALING_START, 'x'), `${SCALING_END}\n${SCALING_START}\n`, `${doc}${SCALING_START}\n`];
    for (const c of cases) expect(() => spliceGenerated(c, 'new')).toThrow(ScalingDocError);
  });

  it('writes into an existing file between its markers, or starts a new file with just the section', () => {
    const existing = join(dir, 'scaling.md');
    writeFileSync(existing, doc);
    writeGeneratedSection(existing, 'new table');
    expect(readFileSync(existing, 'utf8')).toBe(doc.replace('old table', 'new table'));

    const fresh = join(dir, 'fresh.md');
    writeGeneratedSection(fresh, 'first table');
    expect(readFileSync(fresh, 'utf8')).toBe(`# Scaling\n\n${SCALING_START}\nfirst table\n${SCALING_END}\n`);

    const unmarked = join(dir, 'unmarked.md');
    writeFileSync(unmarked, '# Scaling\n\nAll hand-written.\n');
    expect(() => writeGeneratedSection(unmarked, 'table')).toThrow(ScalingDocError);
    expect(readFileSync(unmarked, 'utf8')).toBe('# Scaling\n\nAll hand-written.\n');
  });
});
