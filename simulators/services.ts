import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ServiceError } from '../src/shared/errors.js';

/**
 * Local Redis, Mosquitto and InfluxDB for the demo and the tests: use what answers, else start the installed
 * binaries with throw-away config and data on free ports, else install the Debian package (as root), else explain.
 */

export interface LocalService {
  readonly name: 'redis' | 'mosquitto' | 'influxd';
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Graceful stop (SIGTERM), waits for exit. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, waits for exit. */
  kill(): Promise<void>;
  /** Starts again on the same port and data dir. */
  restart(): Promise<void>;
  /** SIGSTOP: the process hangs (its sockets stay open, nothing answers), as a wedged host would. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** stop() and delete the data dir. */
  destroy(): Promise<void>;
}

const PACKAGES = {
  'redis-server': 'redis-server',
  mosquitto: 'mosquitto',
  influxd: 'influxdb',
  'docker-compose': 'docker-compose',
  chromium: 'chromium',
} as const;
export type Binary = keyof typeof PACKAGES;

/** A command's path, searching PATH plus the sbin directories Debian installs daemons into. */
export function which(bin: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    if (d && existsSync(join(d, bin))) return join(d, bin);
  }
  return undefined;
}

/** Path of `bin`; installs its Debian package when missing and we are root on Debian/Ubuntu. */
export function ensureBinary(bin: Binary, log: (msg: string) => void = () => {}): string {
  const found = which(bin);
  if (found) return found;
  const pkg = PACKAGES[bin];
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root && existsSync('/etc/debian_version') && which('apt-get')) {
    log(`${bin} not found: installing Debian package ${pkg}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { stdio: 'ignore', env });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore', env });
      r = spawnSync('apt-get', ['install', '-y', '-q', pkg], { stdio: 'ignore', env });
    }
    const after = which(bin);
    if (r.status === 0 && after) return after;
    throw new ServiceError(`${bin} is missing and 'apt-get install -y ${pkg}' failed (exit ${r.status})`);
  }
  throw new ServiceError(
    `${bin} is not installed: install the '${pkg}' package (e.g. sudo apt-get install -y ${pkg}) or run the stack with 'docker compose up'`,
  );
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function portAnswers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Whether process `pid` holds the listening TCP socket of `port` (Linux /proc). Tests start many servers at once on
 * free ports: a server whose bind lost a race must not be taken for ready because another test's server answers on
 * its port. undefined where /proc cannot tell (another OS, or the process already gone).
 */
export function listensOn(pid: number | undefined, port: number): boolean | undefined {
  if (pid === undefined || !existsSync('/proc/net/tcp')) return undefined;
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, the inode is the tenth column.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false;
      }
    });
  } catch {
    return undefined;
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, child: ChildProcess, port: number, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new ServiceError(`${what} exited with code ${child.exitCode}: ${output().slice(-2000)}`);
    // Ready only when the answer comes from our own process, not from whoever else holds the port.
    if ((await check()) && listensOn(child.pid, port) !== false) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new ServiceError(`${what} did not start within ${timeoutMs} ms: ${output().slice(-2000)}`);
}

async function influxPing(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/ping`);
    return res.status === 204;
  } catch {
    return false;
  }
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Children must not outlive the process that started them.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

interface Spec {
  name: LocalService['name'];
  bin: Binary;
  args: (dir: string, port: number) => string[];
  prepare?: (dir: string, port: number) => void;
  ready: (port: number) => Promise<boolean>;
  url: (port: number) => string;
  startTimeoutMs: number;
}

/**
 * A free port can be taken by someone else between freePort() and the server's bind (tests start many servers
 * at once): when the caller did not ask for a port, a clash is retried on new ports.
 */
async function onFreePort(port: number | undefined, start: () => Promise<LocalService>): Promise<LocalService> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const clash = err instanceof Error && /address already in use|Address already in use/i.test(err.message);
      if (port !== undefined || !clash || attempt >= 4) throw err;
    }
  }
}

/**
 * `ownGroup`: the server runs in its own process group, so a terminal's Ctrl-C reaches only the process that
 * started it, which stops it in order (the demo); it is still killed when that process exits.
 */
interface LocalOptions {
  port?: number;
  dir?: string;
  ownGroup?: boolean;
  log?: (m: string) => void;
}

async function startLocal(spec: Spec, opts: LocalOptions = {}): Promise<LocalService> {
  const path = ensureBinary(spec.bin, opts.log);
  const port = opts.port ?? (await freePort());
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), `mf-${spec.name}-`));
  spec.prepare?.(dir, port);
  let child: ChildProcess | undefined;
  let output = '';

  const exited = (c: ChildProcess): Promise<void> =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));

  async function start(): Promise<void> {
    output = '';
    const c = spawn(path, spec.args(dir, port), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.ownGroup === true });
    const keep = (b: Buffer): void => {
      output = (output + b.toString()).slice(-8000);
    };
    c.stdout?.on('data', keep);
    c.stderr?.on('data', keep);
    track(c);
    child = c;
    await waitFor(
      () => spec.ready(port),
      `${spec.name} on port ${port}`,
      c,
      port,
      spec.startTimeoutMs,
      () => output,
    );
  }

  let paused = false;
  const alive = (c: ChildProcess | undefined): c is ChildProcess => c !== undefined && c.exitCode === null && c.signalCode === null;

  async function signal(sig: NodeJS.Signals): Promise<void> {
    const c = child;
    if (!alive(c)) return;
    c.kill(sig);
    if (paused) c.kill('SIGCONT'); // a stopped process acts on SIGTERM only once it runs again
    paused = false;
    await exited(c);
  }

  await start();
  return {
    name: spec.name,
    port,
    dir,
    url: spec.url(port),
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async restart() {
      await signal('SIGTERM');
      await start();
    },
    pause() {
      if (alive(child) && !paused) {
        child.kill('SIGSTOP');
        paused = true;
      }
    },
    resume() {
      if (alive(child) && paused) {
        child.kill('SIGCONT');
        paused = false;
      }
    },
    async destroy() {
      await signal('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type RedisOptions = LocalOptions & { persist?: boolean; appendfsync?: 'always' | 'everysec' | 'no' };

export function startRedis(opts: RedisOptions = {}): Promise<LocalService> {
  return startRedisWith(opts, []);
}

function startRedisWith(opts: RedisOptions, extraArgs: readonly string[]): Promise<LocalService> {
  return onFreePort(opts.port, () =>
    startLocal(
      {
        name: 'redis',
        bin: 'redis-server',
        args: (dir, port) => [
          ...extraArgs,
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--dir',
          dir,
          '--save',
          '',
          '--appendonly',
          opts.persist ? 'yes' : 'no',
          '--appendfsync',
          opts.appendfsync ?? 'always',
          '--daemonize',
          'no',
          '--loglevel',
          'warning',
        ],
        ready: (port) => portAnswers('127.0.0.1', port),
        url: (port) => `redis://127.0.0.1:${port}`,
        startTimeoutMs: 10_000,
      },
      opts,
    ),
  );
}

/** A local Redis Cluster: its master nodes (each a LocalService) and what REDIS_CLUSTER_NODES takes. */
export interface LocalRedisCluster {
  readonly nodes: readonly LocalService[];
  /** `127.0.0.1:p1,127.0.0.1:p2,…` */
  readonly clusterNodes: string;
  /** SIGKILL every node. */
  kill(): Promise<void>;
  /** Stops every node and deletes their data dirs. Idempotent. */
  destroy(): Promise<void>;
}

/** Runs a command to its end: exit code and the tail of its output. */
function run(bin: string, args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(c);
    let output = '';
    const keep = (b: Buffer): void => {
      output = (output + b.toString()).slice(-4000);
    };
    c.stdout?.on('data', keep);
    c.stderr?.on('data', keep);
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('error', reject);
    c.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * A Redis Cluster of `masters` (default 3) redis-server processes with no replicas, each on a free port with its own
 * data dir and cluster config file, joined with `redis-cli --cluster create`; resolves once every node reports
 * `cluster_state:ok`. The nodes are killed when this process exits, like every local service.
 */
export async function startRedisCluster(opts: { masters?: number; log?: (m: string) => void; timeoutMs?: number } = {}): Promise<LocalRedisCluster> {
  const count = opts.masters ?? 3;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  ensureBinary('redis-server', opts.log); // Debian's redis-server brings redis-tools (redis-cli)
  const cli = which('redis-cli');
  if (cli === undefined) throw new ServiceError("redis-cli is not installed: install the 'redis-tools' package");
  const clusterArgs = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'];
  const started = await Promise.allSettled(Array.from({ length: count }, () => startRedisWith({ log: opts.log }, clusterArgs)));
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const destroy = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.destroy()));
  };
  const failed = started.find((r) => r.status === 'rejected');
  if (failed !== undefined) {
    await destroy();
    throw failed.reason;
  }
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
  try {
    const created = await run(cli, ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], timeoutMs);
    if (created.code !== 0) throw new ServiceError(`redis-cli --cluster create ${addrs.join(' ')} exited with ${created.code}: ${created.output}`);
    const deadline = Date.now() + timeoutMs;
    for (const n of nodes) {
      for (;;) {
        const info = await run(cli, ['-h', '127.0.0.1', '-p', String(n.port), 'cluster', 'info'], 5000);
        if (info.output.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new ServiceError(`redis cluster node 127.0.0.1:${n.port} not ok within ${timeoutMs} ms: ${info.output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    nodes,
    clusterNodes: addrs.join(','),
    kill: async () => {
      await Promise.all(nodes.map((n) => n.kill()));
    },
    destroy,
  };
}

/** Mosquitto with persistence and queues large enough that QoS 1 backlogs are not dropped (DESIGN.md cost model). */
export function mosquittoConf(dir: string, port: number, extra: readonly string[] = []): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${dir}/`,
    // Started as root, Mosquitto 2 drops to the `mosquitto` user, which cannot write this private dir: the store
    // was never saved and a restart lost every persistent session (and its queued messages). Stay who we are.
    `user ${userInfo().username}`,
    // As in deploy/mosquitto/mosquitto.conf: every save rewrites the whole store, a queued backfill included, and
    // the broker is single-threaded.
    'autosave_interval 30',
    'max_queued_messages 2000000',
    'max_queued_bytes 0',
    'max_inflight_messages 100',
    'message_size_limit 0',
    'log_type error',
    'log_type warning',
    ...extra,
    '',
  ].join('\n');
}

/** `conf`: extra mosquitto.conf lines (a later line wins, e.g. another autosave_interval). */
export function startMosquitto(opts: LocalOptions & { conf?: readonly string[] } = {}): Promise<LocalService> {
  return onFreePort(opts.port, () =>
    startLocal(
      {
        name: 'mosquitto',
        bin: 'mosquitto',
        prepare: (dir, port) => writeFileSync(join(dir, 'mosquitto.conf'), mosquittoConf(dir, port, opts.conf)),
        args: (dir) => ['-c', join(dir, 'mosquitto.conf')],
        ready: (port) => portAnswers('127.0.0.1', port),
        url: (port) => `mqtt://127.0.0.1:${port}`,
        startTimeoutMs: 10_000,
      },
      opts,
    ),
  );
}

export function startInfluxd(opts: LocalOptions = {}): Promise<LocalService> {
  let rpcPort = 0;
  return onFreePort(opts.port, async () => {
    rpcPort = await freePort();
    return startLocal(
      {
        name: 'influxd',
        bin: 'influxd',
        prepare: (dir, port) =>
          writeFileSync(
            join(dir, 'influxdb.conf'),
            [
              'reporting-disabled = true',
              `bind-address = "127.0.0.1:${rpcPort}"`,
              '[meta]',
              `  dir = "${dir}/meta"`,
              '[data]',
              `  dir = "${dir}/data"`,
              `  wal-dir = "${dir}/wal"`,
              '  query-log-enabled = false',
              '  wal-fsync-delay = "0s"',
              '[http]',
              `  bind-address = "127.0.0.1:${port}"`,
              '  log-enabled = false',
              '  max-body-size = 0',
              '[monitor]',
              '  store-enabled = false',
              '[subscriber]',
              '  enabled = false',
              '[continuous_queries]',
              '  enabled = false',
              '[logging]',
              '  level = "error"',
              '',
            ].join('\n'),
          ),
        args: (dir) => ['-config', join(dir, 'influxdb.conf')],
        ready: influxPing,
        url: (port) => `http://127.0.0.1:${port}`,
        startTimeoutMs: 30_000,
      },
      opts,
    );
  });
}

export interface ServiceUrls {
  redisUrl: string;
  mqttUrl: string;
  influxUrl: string;
}

/**
 * For the demo: keep every configured service that answers; start the others locally.
 * Returns the URLs to use and the services started (to stop on exit).
 */
export async function ensureServices(urls: ServiceUrls, log: (m: string) => void): Promise<{ urls: ServiceUrls; started: LocalService[] }> {
  const started: LocalService[] = [];
  const out = { ...urls };
  const hostPort = (u: string, dflt: number): [string, number] => {
    const p = new URL(u);
    return [p.hostname, p.port ? Number(p.port) : dflt];
  };
  const [rh, rp] = hostPort(urls.redisUrl, 6379);
  if (!(await portAnswers(rh, rp))) {
    const s = await startRedis({ log });
    started.push(s);
    out.redisUrl = s.url;
    log(`redis: nothing at ${urls.redisUrl}, started redis-server on ${s.url}`);
  } else log(`redis: using ${urls.redisUrl}`);
  const [mh, mp] = hostPort(urls.mqttUrl, 1883);
  if (!(await portAnswers(mh, mp))) {
    const s = await startMosquitto({ log });
    started.push(s);
    out.mqttUrl = s.url;
    log(`mqtt: nothing at ${urls.mqttUrl}, started mosquitto on ${s.url}`);
  } else log(`mqtt: using ${urls.mqttUrl}`);
  let influxOk = false;
  try {
    const res = await fetch(`${urls.influxUrl}/ping`);
    influxOk = res.status === 204;
  } catch {
    influxOk = false;
  }
  if (!influxOk) {
    const s = await startInfluxd({ log });
    started.push(s);
    out.influxUrl = s.url;
    log(`influxdb: nothing at ${urls.influxUrl}, started influxd on ${s.url}`);
  } else log(`influxdb: using ${urls.influxUrl}`);
  return { urls: out, started };
}

/** Environment (the variables of src/shared/config.ts) for a role talking to private services like these. */
export function roleEnv(
  s: { redis: { url: string }; mqtt: { url: string }; influx?: { url: string } },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: s.redis.url,
    MQTT_URL: s.mqtt.url,
    INFLUX_URL: s.influx?.url ?? 'http://127.0.0.1:1',
    INFLUX_BUCKET: 'meterflow',
    STREAM_SHARDS: '4',
    LOG_LEVEL: 'warn',
    MF_INSTANCE: 'local',
    ...extra,
  };
}
