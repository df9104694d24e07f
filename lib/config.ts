/**
 * Configuration from the environment. `loadConfig(env)` is pure: it reads only the object it is
 * given, so tests build configs without touching process.env.
 */
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError } from "./core/errors";
import type { RateLimit } from "./core/rate-limit";
import { DEFAULT_BACKLOG_BOUNDS, maxInFlightFor } from "./core/policies";

export const ALL_SERVICES = ["api", "users", "jobs", "manager", "worker"] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

export interface S3Config {
	endpoint: string;
	bucket: string;
	region: string;
	accessKeyId: string;
	secretAccessKey: string;
}

export interface Config {
	port: number;
	dataDir: string;
	adminToken: string | null;
	/** null = SQLite files in the data folder. */
	databaseUrl: string | null;
	/** null = in-process coordination. */
	zookeeper: string | null;
	zkRoot: string;
	zkSessionTimeoutMs: number;
	/** null = no transporter (single process). */
	transporter: string | null;
	/** null = local object folder. */
	s3: S3Config | null;
	services: ServiceName[];
	nodeId: string;
	namespace: string;
	logLevel: string;
	/** The unprivileged account jobs without runAs use when the worker runs as root. */
	defaultRunUser: string;
	/** The accounts non-admins may name in runAs (admins: any). */
	userRunAs: string[];
	maxUploadBytes: number;
	maxOutputBytes: number;
	/** A worker whose clock is off the database's by more than this gets no jobs. */
	clockSkewBoundMs: number;
	heartbeatMs: number;
	workerCapacity: number;
	/** Processes a worker runs at once; further runs wait for a slot (their lag shows it). */
	maxConcurrentRuns: number;
	/** Helper processes that spawn the jobs (0 = spawn from the worker process itself). */
	runners: number;
	/**
	 * How far ahead of its instant a scheduled fire of an `allow` job is claimed, recorded and its
	 * process spawned, held until the instant (0 = at the instant).
	 */
	prefireMs: number;
	/** Fires a worker takes on at once (claiming, recording, running); further fires wait in its backlog. */
	maxInFlight: number;
	/** The backlog's bounds: fires of one run_all job, of all jobs; a skip job's fire may start this late (ms). */
	backlogPerJob: number;
	backlogTotal: number;
	misfireThresholdMs: number;
	metricsPort: number | null;
	/** Audit records older than this are dropped (0: kept for ever). */
	auditRetentionDays: number;
	/** Requests per token, per client address, and failed authentications per address (0: no limit). */
	rateLimits: { token: RateLimit; address: RateLimit; authFailures: RateLimit };
	/** Take the client's address from X-Forwarded-For (behind a proxy that sets it, as deploy/haproxy.cfg does). */
	trustProxy: boolean;
	/** CRONJOB_SECRET_KEY (32 bytes, hex or base64), which seals jobs' secretEnv; null = the generated key file of the embedded default. */
	secretKey: string | null;
	/** CRONJOB_SECRET_KEY_PREVIOUS: keys being rotated out, which still open what they sealed. */
	secretKeyPrevious: string[];
	/**
	 * Origins a browser may call the API from (CORS): exact origins (`https://app.example.com`), `*`
	 * wildcards in them (`https://*.example.com`), or `*` for any. Empty: CORS is off.
	 */
	corsOrigins: string[];
}

/** An origin as a browser sends it (scheme://host[:port]), `*` allowed in the host; or `*` alone. */
const CORS_ORIGIN = /^(?:\*|https?:\/\/(?:[A-Za-z0-9*.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?)$/;

/** `CRONJOB_CORS_ORIGINS=https://a.example.com,https://*.example.org`: the allowed origins; unset or empty: none. */
export function parseCorsOrigins(raw: string | null): string[] {
	const origins = (raw ?? "")
		.split(",")
		.map((o) => o.trim())
		.filter(Boolean);
	for (const o of origins) {
		if (!CORS_ORIGIN.test(o)) {
			throw new ConfigError("CRONJOB_CORS_ORIGINS", `CRONJOB_CORS_ORIGINS: ${JSON.stringify(o)} is not an origin (scheme://host[:port], or *)`);
		}
	}
	return origins;
}

function int(env: NodeJS.ProcessEnv, name: string, def: number): number {
	const raw = env[name];
	if (raw === undefined || raw === "") return def;
	const n = Number(raw);
	if (!Number.isFinite(n)) throw new ConfigError(name, `${name} must be a number, got ${JSON.stringify(raw)}`);
	return n;
}

function str(env: NodeJS.ProcessEnv, name: string): string | null {
	const raw = env[name];
	return raw === undefined || raw.trim() === "" ? null : raw.trim();
}

/** `SERVICES=api,jobs`: `jobs` brings `users` along (it owns the users table beside jobs and runs). */
export function parseServices(raw: string | null): ServiceName[] {
	if (raw === "none") return [];
	const names = (raw ?? "api,jobs,manager,worker")
		.split(",")
		.map((s) => s.trim())
		.filter(Boolean);
	const out = new Set<ServiceName>();
	for (const n of names) {
		if (!(ALL_SERVICES as readonly string[]).includes(n))
			throw new ConfigError("SERVICES", `SERVICES: unknown service ${JSON.stringify(n)} (known: ${ALL_SERVICES.join(", ")})`);
		out.add(n as ServiceName);
		if (n === "jobs") out.add("users");
	}
	return ALL_SERVICES.filter((s) => out.has(s));
}

/** "RATE[:BURST]" requests a second (burst default: twice the rate, at least 1); "0" = no limit. */
function rateLimit(env: NodeJS.ProcessEnv, name: string, fallback: string): RateLimit {
	const raw = str(env, name) ?? fallback;
	const m = /^\s*(\d+(?:\.\d+)?)\s*(?::\s*(\d+)\s*)?$/.exec(raw);
	if (!m) throw new ConfigError(name, `${name} must be RATE or RATE:BURST (requests a second, e.g. 50:100; 0 = no limit), got ${JSON.stringify(raw)}`);
	const perSecond = Number(m[1]);
	return { perSecond, burst: m[2] !== undefined ? Number(m[2]) : Math.max(1, Math.ceil(perSecond * 2)) };
}

export function loadConfig(env: NodeJS.ProcessEnv, cwd = process.cwd()): Config {
	const s3Endpoint = str(env, "S3_ENDPOINT");
	return {
		port: int(env, "PORT", 30000),
		dataDir: path.resolve(cwd, str(env, "CRONJOB_DATA_DIR") ?? "./data"),
		adminToken: str(env, "CRONJOB_ADMIN_TOKEN"),
		databaseUrl: str(env, "DATABASE_URL"),
		zookeeper: str(env, "ZOOKEEPER"),
		zkRoot: str(env, "ZOOKEEPER_ROOT") ?? "/cronjob",
		zkSessionTimeoutMs: int(env, "ZOOKEEPER_SESSION_TIMEOUT_MS", 2000),
		transporter: str(env, "TRANSPORTER"),
		s3: s3Endpoint
			? {
					endpoint: s3Endpoint,
					bucket: str(env, "S3_BUCKET") ?? "cronjob",
					region: str(env, "AWS_REGION") ?? "us-east-1",
					accessKeyId: str(env, "AWS_ACCESS_KEY_ID") ?? "",
					secretAccessKey: str(env, "AWS_SECRET_ACCESS_KEY") ?? "",
				}
			: null,
		services: parseServices(str(env, "SERVICES")),
		nodeId: str(env, "NODE_ID") ?? `${os.hostname()}-${process.pid}`,
		namespace: str(env, "NAMESPACE") ?? "",
		logLevel: str(env, "LOG_LEVEL") ?? "info",
		defaultRunUser: str(env, "CRONJOB_RUN_USER") ?? "nobody",
		userRunAs: (str(env, "CRONJOB_USER_RUN_AS") ?? str(env, "CRONJOB_RUN_USER") ?? "nobody")
			.split(",")
			.map((u) => u.trim())
			.filter(Boolean),
		maxUploadBytes: int(env, "CRONJOB_MAX_UPLOAD_BYTES", 16 * 1024 * 1024),
		maxOutputBytes: int(env, "CRONJOB_MAX_OUTPUT_BYTES", 64 * 1024),
		clockSkewBoundMs: int(env, "CRONJOB_CLOCK_SKEW_MS", 1000),
		heartbeatMs: int(env, "CRONJOB_HEARTBEAT_MS", 10000),
		workerCapacity: int(env, "CRONJOB_WORKER_CAPACITY", 100000),
		maxConcurrentRuns: int(env, "CRONJOB_MAX_CONCURRENT_RUNS", 256),
		runners: int(env, "CRONJOB_RUNNERS", Math.min(4, os.cpus().length)),
		prefireMs: int(env, "CRONJOB_PREFIRE_MS", 1000),
		maxInFlight: int(env, "CRONJOB_MAX_IN_FLIGHT", maxInFlightFor(int(env, "CRONJOB_MAX_CONCURRENT_RUNS", 256))),
		backlogPerJob: int(env, "CRONJOB_BACKLOG_PER_JOB", DEFAULT_BACKLOG_BOUNDS.perJob),
		backlogTotal: int(env, "CRONJOB_BACKLOG_MAX", DEFAULT_BACKLOG_BOUNDS.total),
		misfireThresholdMs: int(env, "CRONJOB_MISFIRE_THRESHOLD_MS", DEFAULT_BACKLOG_BOUNDS.thresholdMs),
		metricsPort: str(env, "METRICS_PORT") ? int(env, "METRICS_PORT", 3030) : null,
		auditRetentionDays: int(env, "CRONJOB_AUDIT_RETENTION_DAYS", 365),
		rateLimits: {
			token: rateLimit(env, "CRONJOB_RATE_LIMIT", "50:100"),
			address: rateLimit(env, "CRONJOB_RATE_LIMIT_ADDRESS", "100:200"),
			authFailures: rateLimit(env, "CRONJOB_AUTH_FAIL_LIMIT", "0.2:10"),
		},
		trustProxy: ["1", "true", "yes"].includes((str(env, "CRONJOB_TRUST_PROXY") ?? "").toLowerCase()),
		secretKey: str(env, "CRONJOB_SECRET_KEY"),
		secretKeyPrevious: (str(env, "CRONJOB_SECRET_KEY_PREVIOUS") ?? "")
			.split(",")
			.map((k) => k.trim())
			.filter(Boolean),
		corsOrigins: parseCorsOrigins(str(env, "CRONJOB_CORS_ORIGINS")),
	};
}
