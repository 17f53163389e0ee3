import { parseArgs } from 'node:util';
import { hashToken, newToken } from '../shared/api-tokens.js';
import { parseTokens, SCOPES } from '../shared/config-api.js';
import { ConfigError } from '../shared/errors.js';

export const TOKEN_USAGE = `usage:
  meterflow token new --scopes SCOPE[,SCOPE…] [--id NAME]
      a new random token and its API_TOKENS entry (scrypt hash, id, scopes); only the hash goes into config
  meterflow token hash < token.txt
      the hash of a token read from stdin (first line), for an API_TOKENS key
scopes: ${SCOPES.join(', ')}
`;

export interface TokenIo {
  readonly stdin: AsyncIterable<Buffer | string>;
  write(s: string): void;
  error(s: string): void;
}

async function firstLine(input: AsyncIterable<Buffer | string>): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    if (text.includes('\n')) break;
  }
  return (text.split(/\r?\n/, 1)[0] ?? '').trim();
}

/** `meterflow token new|hash`: needs no configuration and no service. Returns the exit code. */
export async function tokenCommand(args: readonly string[], io: TokenIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  const parse = (a: string[]) =>
    parseArgs({ args: a, allowPositionals: true, strict: true, options: { scopes: { type: 'string' }, id: { type: 'string' }, help: { type: 'boolean' } } });
  try {
    parsed = parse([...args]);
  } catch (err) {
    io.error(`meterflow token: ${err instanceof Error ? err.message : String(err)}\n${TOKEN_USAGE}`);
    return 2;
  }
  const { positionals, values } = parsed;
  const sub = positionals[0];
  if (values.help === true || (sub !== 'new' && sub !== 'hash')) {
    (values.help === true ? io.write : io.error)(TOKEN_USAGE);
    return values.help === true ? 0 : 2;
  }
  if (sub === 'hash') {
    const token = await firstLine(io.stdin);
    if (token.length < 8 || /\s/.test(token)) {
      io.error('meterflow token hash: expected a token of at least 8 characters, without spaces, on stdin\n');
      return 2;
    }
    io.write(`${await hashToken(token)}\n`);
    return 0;
  }
  const scopes = (values.scopes ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const token = newToken();
  const hash = await hashToken(token);
  const entry = { [hash]: values.id === undefined ? scopes : { id: values.id, scopes } };
  try {
    // The same checks API_TOKENS gets at start: scope names, id syntax.
    const [checked] = parseTokens(JSON.stringify(entry));
    io.write(`token  ${token}\nid     ${checked?.id ?? ''}\nentry  ${JSON.stringify(entry).slice(1, -1)}\n`);
    io.error('The token is shown once: hand it to the client. Put only the entry into the API_TOKENS object.\n');
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.error(`meterflow token new: ${err.message.replace(/^API_TOKENS \(entry #1\): /, '')}\n`);
    return 2;
  }
}
