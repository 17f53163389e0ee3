import { describe, expect, it } from 'vitest';
import { TokenAuth } from '../../src/api/auth.js';
import { tokenCommand } from '../../src/api/token-command.js';
import { derivedTokenId, hashToken, parseTokenHash, TokenHashError, verifyToken } from '../../src/shared/api-tokens.js';
import { parseTokens } from '../../src/shared/config-api.js';
import { loadConfig } from '../../src/shared/config.js';
import { ConfigError, ServiceError } from '../../src/shared/errors.js';

/** Cheap scrypt for tests (the CLI writes ln=14). */
const FAST = { ln: 10, r: 8, p: 1 };
const TOKEN = 'mf_unit-test-token-0123456789';

describe('token hashes', () => {
  it('hash then verify: the token matches, anything else does not; every hash has its own salt', async () => {
    const stored = await hashToken(TOKEN, FAST);
    expect(stored).toMatch(/^scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(stored).not.toContain(TOKEN);
    const h = parseTokenHash(stored);
    if (h === undefined) throw new Error('not parsed');
    expect(await verifyToken(TOKEN, h)).toBe(true);
    expect(await verifyToken(`${TOKEN}x`, h)).toBe(false);
    expect(await verifyToken('', h)).toBe(false);
    expect(await hashToken(TOKEN, FAST)).not.toBe(stored);
  });

  it('the default cost is ln=14, r=8, p=1', async () => {
    expect(await hashToken(TOKEN)).toMatch(/^scrypt\$ln=14,r=8,p=1\$/);
  });

  it.each([
    ['scrypt$', 'token hash scrypt$ln='],
    ['scrypt$ln=14,r=8,p=1$short$AAAA', 'token hash scrypt$ln='],
    [`scrypt$ln=9,r=8,p=1$${'A'.repeat(22)}$${'A'.repeat(43)}`, 'ln 10–16'],
    [`scrypt$ln=17,r=8,p=1$${'A'.repeat(22)}$${'A'.repeat(43)}`, 'ln 10–16'],
    [`scrypt$ln=14,r=8,p=9$${'A'.repeat(22)}$${'A'.repeat(43)}`, 'p 1–4'],
  ])('%s is refused: %s', (spec, message) => {
    expect(() => parseTokenHash(spec)).toThrow(TokenHashError);
    expect(() => parseTokenHash(spec)).toThrow(message);
  });

  it('a plain token is not a hash', () => {
    expect(parseTokenHash(TOKEN)).toBeUndefined();
  });

  it('derived ids are short, stable, and differ between a token and its hash', () => {
    const id = derivedTokenId(TOKEN);
    expect(id).toMatch(/^tok-[0-9a-f]{12}$/);
    expect(derivedTokenId(TOKEN)).toBe(id);
    expect(derivedTokenId(`scrypt$${TOKEN}`)).not.toBe(id);
  });
});

describe('API_TOKENS', () => {
  it('takes hashes and plain tokens, with scopes or with {id, scopes}', async () => {
    const stored = await hashToken(TOKEN, FAST);
    const tokens = parseTokens(
      JSON.stringify({
        [stored]: { id: 'billing-system', scopes: ['billing:read'] },
        'plain-dev-token': ['admin'],
        [await hashToken('other-token', FAST)]: [],
      }),
    );
    expect(tokens.map((t) => [t.id, t.secret.kind, [...t.scopes]])).toEqual([
      ['billing-system', 'scrypt', ['billing:read']],
      [derivedTokenId('plain-dev-token'), 'plain', ['admin']],
      [expect.stringMatching(/^tok-[0-9a-f]{12}$/), 'scrypt', []],
    ]);
  });

  it.each([
    [{ short: ['admin'] }, 'API_TOKENS (entry #1): expected a token of at least 8 characters, or a token hash'],
    [
      { 'plain-dev-token': ['root'] },
      'API_TOKENS (entry #1): expected scopes from billing:read, alerts:write, meters:command, insights:read, dr:write, admin, got "root"',
    ],
    [{ 'plain-dev-token': { id: 'has space', scopes: [] } }, 'API_TOKENS (entry #1): expected an "id" of 1–64 letters, digits, _ . : or -'],
    [{ 'plain-dev-token': { id: 'a', scopes: [], extra: 1 } }, 'API_TOKENS (entry #1): expected only "id" and "scopes", got "extra"'],
    [
      { 'plain-dev-token': { id: 'a', scopes: [] }, 'plain-dev-token2': { id: 'a', scopes: [] } },
      'API_TOKENS (entry #2): expected a token id not used by another entry, got "a" twice',
    ],
    [{ 'scrypt$ln=14$x': ['admin'] }, 'API_TOKENS (entry #1): expected a token hash'],
  ])('%j is refused without echoing the token', (value, message) => {
    const run = () => parseTokens(JSON.stringify(value));
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(message);
    try {
      run();
    } catch (err) {
      expect(String(err)).not.toContain('plain-dev-token');
    }
  });

  it('unparsable JSON does not quote the text', () => {
    expect(() => parseTokens('{"plain-dev-token": [')).toThrow('which did not parse');
    try {
      parseTokens('{"plain-dev-token": [');
    } catch (err) {
      expect(String(err)).not.toContain('plain-dev-token');
      expect(String(err instanceof Error ? err.cause : '')).not.toContain('plain-dev-token');
    }
  });
});

describe('API settings from the environment', () => {
  it('defaults: limits, small bodies, no CORS, no trusted proxy', () => {
    const api = loadConfig({}).api;
    expect({ ...api, tokens: api.tokens.length }).toEqual({
      host: '127.0.0.1',
      port: 8080,
      tokens: 0,
      rateLimit: { perToken: 600, perAddress: 1200, probesPerAddress: 600, windowMs: 60_000 },
      bodyLimit: 1_048_576,
      importBodyLimit: 16_777_216,
      corsOrigins: [],
      trustProxy: [],
      auditMaxLen: 100_000,
    });
  });

  it('reads every API_* variable', () => {
    const api = loadConfig({
      API_RATE_LIMIT_TOKEN: '5',
      API_RATE_LIMIT_ADDRESS: '7',
      API_RATE_LIMIT_PROBES: '9',
      API_RATE_WINDOW_S: '30',
      API_BODY_LIMIT: '2048',
      API_IMPORT_BODY_LIMIT: '4096',
      API_CORS_ORIGINS: 'https://ops.example.com, http://localhost:3000/',
      API_TRUST_PROXY: '10.0.0.1, 192.168.0.0/16, ::1',
      API_AUDIT_MAXLEN: '1000',
    }).api;
    expect(api.rateLimit).toEqual({ perToken: 5, perAddress: 7, probesPerAddress: 9, windowMs: 30_000 });
    expect([api.bodyLimit, api.importBodyLimit, api.auditMaxLen]).toEqual([2048, 4096, 1000]);
    expect(api.corsOrigins).toEqual(['https://ops.example.com', 'http://localhost:3000']);
    expect(api.trustProxy).toEqual(['10.0.0.1', '192.168.0.0/16', '::1']);
  });

  it.each([
    ['API_CORS_ORIGINS', 'https://ops.example.com/path', 'API_CORS_ORIGINS: expected comma-separated origins'],
    ['API_CORS_ORIGINS', 'ops.example.com', 'API_CORS_ORIGINS: expected comma-separated origins'],
    ['API_TRUST_PROXY', '10.0.0.0/33', 'API_TRUST_PROXY: expected comma-separated IP addresses or CIDRs, got "10.0.0.0/33"'],
    ['API_TRUST_PROXY', 'proxy.local', 'API_TRUST_PROXY: expected comma-separated IP addresses or CIDRs, got "proxy.local"'],
    ['API_RATE_LIMIT_TOKEN', '0', 'API_RATE_LIMIT_TOKEN: expected an integer from 1 to 1000000, got 0'],
    ['API_BODY_LIMIT', '10', 'API_BODY_LIMIT: expected an integer from 1024 to 1073741824, got 10'],
  ])('%s=%s is refused', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });
});

describe('TokenAuth', () => {
  it('identifies hashed and plain tokens; scrypt runs once per token, then the cache answers', async () => {
    const slow = 'hashed-token-at-default-cost';
    const tokens = parseTokens(JSON.stringify({ [await hashToken(slow)]: { id: 'ops', scopes: ['admin'] }, 'plain-dev-token': { id: 'dev', scopes: [] } }));
    const auth = new TokenAuth(tokens);
    expect((await auth.identify(slow))?.id).toBe('ops');
    expect((await auth.identify('plain-dev-token'))?.id).toBe('dev');
    expect(await auth.identify('plain-dev-tokex')).toBeUndefined();
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) expect((await auth.identify(slow))?.id).toBe('ops');
    // 200 scrypt runs at ln=14 would take seconds; cached, they take well under one.
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(auth.cached).toEqual({ known: 2, unknown: 1 });
  });

  it('wrong tokens fill only their own bounded cache and never evict a good token', async () => {
    const tokens = parseTokens(JSON.stringify({ [await hashToken(TOKEN, FAST)]: { id: 'good', scopes: [] } }));
    const auth = new TokenAuth(tokens, { cacheSize: 16 });
    expect((await auth.identify(TOKEN))?.id).toBe('good');
    for (let i = 0; i < 300; i++) expect(await auth.identify(`wrong-token-${i}`)).toBeUndefined();
    expect(auth.cached).toEqual({ known: 1, unknown: 16 });
    expect((await auth.identify(TOKEN))?.id).toBe('good');
  });

  it('concurrent first uses of a token share one verification; empty and over-long tokens are refused unhashed', async () => {
    const tokens = parseTokens(JSON.stringify({ [await hashToken(TOKEN, FAST)]: { id: 'good', scopes: [] } }));
    const auth = new TokenAuth(tokens);
    const ids = await Promise.all(Array.from({ length: 20 }, () => auth.identify(TOKEN)));
    expect(ids.map((t) => t?.id)).toEqual(Array(20).fill('good'));
    expect(await auth.identify('')).toBeUndefined();
    expect(await auth.identify('x'.repeat(513))).toBeUndefined();
    expect(auth.cached).toEqual({ known: 1, unknown: 0 });
  });
  it('more new tokens in flight than allowed: the extra checks fail with ServiceError (503), the rest complete', async () => {
    const tokens = parseTokens(JSON.stringify({ [await hashToken(TOKEN, FAST)]: { id: 'good', scopes: [] } }));
    const auth = new TokenAuth(tokens, { maxChecking: 2 });
    const results = await Promise.allSettled(['wrong-token-1', 'wrong-token-2', 'wrong-token-3', TOKEN].map((t) => auth.identify(t)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    expect(results[2]?.status === 'rejected' ? results[2].reason : undefined).toBeInstanceOf(ServiceError);
    expect((await auth.identify(TOKEN))?.id).toBe('good');
  });
});

describe('meterflow token', () => {
  function io(stdin: string[] = []) {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      io: {
        stdin: (async function* () {
          yield* stdin;
        })(),
        write: (s: string) => void out.push(s),
        error: (s: string) => void err.push(s),
      },
    };
  }

  it('token new: prints a token and an API_TOKENS entry that accepts it', async () => {
    const t = io();
    expect(await tokenCommand(['new', '--scopes', 'billing:read,alerts:write', '--id', 'billing-system'], t.io)).toBe(0);
    const text = t.out.join('');
    const token = /^token {2}(\S+)$/m.exec(text)?.[1] ?? '';
    const entry = /^entry {2}(.+)$/m.exec(text)?.[1] ?? '';
    expect(token).toMatch(/^mf_[A-Za-z0-9_-]{43}$/);
    expect(text).toContain('id     billing-system\n');
    expect(entry).not.toContain(token);
    const [parsed] = parseTokens(`{${entry}}`);
    expect(parsed?.id).toBe('billing-system');
    expect([...(parsed?.scopes ?? [])]).toEqual(['billing:read', 'alerts:write']);
    expect((await new TokenAuth(parseTokens(`{${entry}}`)).identify(token))?.id).toBe('billing-system');
  });

  it('token new with an unknown scope: exit 2, nothing printed on stdout', async () => {
    const t = io();
    expect(await tokenCommand(['new', '--scopes', 'root'], t.io)).toBe(2);
    expect(t.out).toEqual([]);
    expect(t.err.join('')).toContain('expected scopes from billing:read');
  });

  it('token hash: hashes the first line of stdin', async () => {
    const t = io([`${TOKEN}\n`, 'ignored\n']);
    expect(await tokenCommand(['hash'], t.io)).toBe(0);
    const h = parseTokenHash(t.out.join('').trim());
    if (h === undefined) throw new Error('no hash printed');
    expect(await verifyToken(TOKEN, h)).toBe(true);
    const short = io(['abc\n']);
    expect(await tokenCommand(['hash'], short.io)).toBe(2);
    expect(await tokenCommand(['frobnicate'], io().io)).toBe(2);
  });
});
