/**
 * api.gateway: the REST API on moleculer-web. Its routes and the role each needs are one table,
 * lib/core/roles.ts ROUTES; every route but GET /health needs a bearer token (401) of a role at least
 * the route's (403 naming it), checked here before the action is called;
 * errors are JSON {name, message, code, type, data} with data.field naming the offending field.
 *
 * The edge checks what moleculer-web leaves to the actions, before any action runs: path ids
 * (validatePathId), the body's content encoding and charset (bodyError), the token's length.
 * OPTIONS is answered here as a CORS preflight and nothing else (moleculer-web would route it as
 * the method its Access-Control-Request-Method names, or as GET, and run that action); CORS is off
 * unless CRONJOB_CORS_ORIGINS names the origins.
 */
import { createHash } from "node:crypto";
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { Config } from "../lib/config";
import {
	badRequest,
	forbidden,
	RateLimitedError,
	routeNotFound,
	unauthorized,
	unavailable,
	unsupportedMediaType,
	type UnavailableError,
} from "../lib/core/errors";
import { toMoleculerError } from "../lib/adapters/moleculer/errors";
import { authorizeRoute, requireRole, ROUTES, type RouteRule } from "../lib/core/roles";
import type { AuthUser } from "../lib/core/types";
import type { Clock } from "../lib/core/clock";
import { RateLimiter, type Take } from "../lib/core/rate-limit";
import { validatePathId } from "../lib/core/validation";
import { AUDIT_PAGE_MAX, auditFilter, auditParams, type AuditQuery } from "../lib/adapters/moleculer/audit-params";

/**
 * Health entries that are reported but never make /health answer 503: a worker with a bad clock gets
 * no jobs (the manager excludes it), and HAProxy must not take the API out because of it.
 */
export const ADVISORY_HEALTH = new Set(["workerClocks", "workerClock"]);

export interface ApiDeps {
	config: Config;
	clock: Clock;
}

type Req = IncomingMessage & { $ctx?: Context; $params?: Record<string, unknown>; headers: Record<string, string | string[] | undefined> };

interface RouteSettings {
	path: string;
	aliases?: Record<string, string>;
}

interface ApiThis extends Service {
	settings: { port: number; routes: RouteSettings[] };
	preflight(req: Req, res: ServerResponse): void;
}

/** Request headers a browser may send cross-origin (preflight), and response headers it may read. */
const CORS_ALLOWED_HEADERS = ["Authorization", "Content-Type", "Content-Encoding"];
const CORS_EXPOSED_HEADERS = ["Location", "Content-Disposition", "X-Content-SHA256"];
const CORS_MAX_AGE_S = 600;

/** moleculer-web's own request handler, which ours wraps (OPTIONS never reaches it). */
const gatewayHttpHandler = (ApiGateway.methods as Record<string, (this: unknown, ...args: unknown[]) => unknown>).httpHandler;

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Whether a browser origin is one of `allowed` (CRONJOB_CORS_ORIGINS): `*` allows any, an entry
 * matches exactly, and a `*` in an entry stands for any run of host characters (`https://*.example.com`).
 */
export function originAllowed(origin: string, allowed: readonly string[]): boolean {
	return allowed.some((a) => {
		if (a === "*" || a === origin) return true;
		if (!a.includes("*")) return false;
		return new RegExp(`^${a.split("*").map(escapeRegExp).join("[A-Za-z0-9.-]*")}$`).test(origin);
	});
}

/** One alias of the route table: its method and a matcher of the raw (still percent-encoded) path. */
interface AliasPattern {
	method: string;
	re: RegExp;
}

/** The aliases of the route settings as path matchers (`:id` matches one segment). */
export function aliasPatterns(routes: readonly RouteSettings[]): AliasPattern[] {
	const out: AliasPattern[] = [];
	for (const route of routes) {
		for (const key of Object.keys(route.aliases ?? {})) {
			// "GET /jobs/:id"; an alias without a method ("/x") answers every method ("*").
			const parts = key.trim().split(/\s+/);
			const [method, path] = parts.length > 1 ? [parts[0].toUpperCase(), parts[1]] : ["*", parts[0]];
			const full = `/${route.path}/${path}`.replace(/\/{2,}/g, "/").replace(/(.)\/$/, "$1");
			const source = full
				.split("/")
				.map((seg) => (seg.startsWith(":") ? "[^/]+" : escapeRegExp(seg)))
				.join("/");
			out.push({ method, re: new RegExp(`^${source}$`) });
		}
	}
	return out;
}

/** The methods the route table answers on a path (the path part of a request URL); none: not a route. */
export function methodsFor(patterns: readonly AliasPattern[], url: string): string[] {
	let path = url.split("?")[0];
	if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
	return [...new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method))];
}

/**
 * body-parser's failures as our errors, naming what is wrong: a content encoding it does not read
 * (415, `content-encoding`), a charset (415, `content-type`), a body that does not decode as its
 * encoding says or is cut short (400, `body`). Invalid JSON and a body over the limit go on as they
 * are (errorBody shapes them: 400 and 413 naming `body`); a server-side failure too.
 */
export function bodyError(err: unknown, contentEncoding?: string): unknown {
	if (typeof err !== "object" || err === null) return err;
	const e = err as { status?: unknown; type?: unknown; message?: unknown; encoding?: unknown; charset?: unknown };
	const text = (v: unknown) => (typeof v === "string" ? v : "");
	switch (e.type) {
		case "entity.parse.failed":
		case "entity.too.large":
			return err;
		case "encoding.unsupported":
			return unsupportedMediaType("content-encoding", `unsupported content encoding ${JSON.stringify(text(e.encoding))}: send identity, gzip or deflate`);
		case "charset.unsupported":
			return unsupportedMediaType("content-type", `unsupported charset ${JSON.stringify(text(e.charset))}`);
	}
	const status = typeof e.status === "number" ? e.status : 500;
	if (status < 400 || status >= 500) return err;
	const as = contentEncoding ? ` as ${JSON.stringify(contentEncoding)}` : "";
	return badRequest("body", `the request body could not be read${as}: ${text(e.message) || "invalid body"}`);
}

/** Moleculer's error for a call while the transporter is down (its typings leave the class out). */
const { BrokerDisconnectedError } = Errors as unknown as { BrokerDisconnectedError: new (...args: unknown[]) => Error };

/**
 * A call that reached no node: the service's node is gone or unreachable (during a transporter
 * outage every remote node is: lib/adapters/moleculer/nats-transporter.ts), or the transporter is
 * down. A backend is down: 503, not Moleculer's 404 (which would tell a client that the job does not
 * exist) or 502.
 */
export function unreachable(err: unknown): UnavailableError | null {
	if (err instanceof Errors.ServiceNotFoundError || err instanceof Errors.ServiceNotAvailableError) {
		const action = (err.data as { action?: unknown } | null)?.action;
		return unavailable(typeof action === "string" && action.includes(".") ? action.slice(0, action.indexOf(".")) : "service", err);
	}
	if (err instanceof BrokerDisconnectedError) return unavailable("transporter", err);
	return null;
}

/** Shape any error as the API's JSON error; fastest-validator's array data gets a `field`. */
export function errorBody(raw: unknown): { status: number; body: Record<string, unknown> } {
	const down = unreachable(raw);
	const err = down ? toMoleculerError(down) : raw;
	const e = (err ?? {}) as { name?: string; message?: string; code?: unknown; type?: string; data?: unknown; status?: number; statusCode?: number };
	let code = typeof e.code === "number" ? e.code : Number(e.status ?? e.statusCode ?? 500);
	if (!Number.isInteger(code) || code < 400 || code > 599) code = 500;
	let data = e.data ?? null;
	let name = e.name ?? "Error";
	let type = e.type ?? null;
	let message = e.message ?? "Internal error";
	if (Array.isArray(data)) {
		const first = data[0] as { field?: string; message?: string; type?: string; actual?: unknown } | undefined;
		let field = first?.field ?? null;
		// An unknown key ($$strict) is reported on the object itself, the keys in `actual`: name the first.
		if (field === null && first?.type === "objectStrict") field = (typeof first.actual === "string" ? first.actual : "").split(", ")[0] || "body";
		data = { field, errors: data };
		if (first?.message) message = first.message;
	}
	const hasField = typeof data === "object" && data !== null && typeof (data as { field?: unknown }).field === "string";
	// body-parser errors (entity.too.large, entity.parse.failed) carry no field.
	if (type === "entity.too.large" || code === 413) {
		name = "PayloadTooLarge";
		type = "PAYLOAD_TOO_LARGE";
		const field = typeof data === "object" && data !== null && "field" in data ? data.field : undefined;
		data = { field: field ?? "body", ...data };
	} else if (type === "entity.parse.failed") {
		name = "InvalidJSON";
		type = "INVALID_JSON";
		code = 400;
		data = { field: "body" };
	} else if (type === "UNABLE_DECODE_PARAM") {
		// moleculer-web: a path parameter that is not percent-encoded UTF-8 (`/jobs/%E0%A4`).
		message = "a path parameter is not valid percent-encoded UTF-8";
		data = { field: "path" };
	} else if (type === "ORIGIN_NOT_ALLOWED") {
		// moleculer-web's CORS check of a request's Origin (CRONJOB_CORS_ORIGINS).
		message = "this origin may not call the API (CRONJOB_CORS_ORIGINS)";
		data = { field: "origin" };
	} else if (code === 404 && !hasField) {
		// No route (moleculer-web's own 404 carries no data).
		data = { ...data, field: "path" };
	} else if (code === 403 && !hasField) {
		// Not allowed to the caller as such (admins only): what its token may do.
		data = { ...data, field: "authorization" };
	}
	if (code >= 500 && code !== 503) message = "Internal error";
	return { status: code, body: { name, message, code, type, data } };
}

/** The client's address: the socket's, or with trustProxy the left-most X-Forwarded-For entry. */
export function clientAddress(req: Pick<IncomingMessage, "socket" | "headers">, trustProxy: boolean): string {
	if (trustProxy) {
		const fwd = req.headers["x-forwarded-for"];
		const first = (Array.isArray(fwd) ? fwd[0] : fwd)?.split(",")[0]?.trim();
		if (first) return first;
	}
	return req.socket.remoteAddress ?? "unknown";
}

/** A refusal as the 429 it answers (Retry-After in whole seconds, at least 1); `seen` is told first (the audit log). */
function refused(take: Take, what: "token" | "address" | "authentication", seen: (what: string) => void): void {
	if (take.ok) return;
	seen(what);
	throw toMoleculerError(new RateLimitedError(Math.max(1, Math.ceil(take.retryAfterMs / 1000)), what));
}

/** moleculer-web's aliases ("METHOD /path": action) of these routes. */
function aliasesOf(routes: readonly RouteRule[]): Record<string, string> {
	return Object.fromEntries(routes.map((r) => [`${r.method} ${r.path}`, r.action]));
}

/**
 * The token of an Authorization header, or null when the header is malformed: "Bearer", one space or
 * more, then 1 to 512 visible ASCII characters (the users service's bound; a longer one is no token of ours).
 */
export function bearerToken(header: string): string | null {
	const m = /^Bearer +([\x21-\x7e]{1,512}) *$/i.exec(header);
	return m ? m[1] : null;
}

/**
 * A request Node's HTTP parser refuses before any route sees it (headers over its 16 KiB limit, a
 * line that is not HTTP), answered as the API's JSON error: 431 naming `headers`, 400 naming
 * `request` (Node's own answer has no body). Nothing for a connection already gone.
 */
export function clientErrorResponse(err: { code?: string }): string {
	const [status, name, type, field, message]: [number, string, string, string, string] =
		err.code === "HPE_HEADER_OVERFLOW"
			? [431, "HeadersTooLarge", "HEADERS_TOO_LARGE", "headers", "the request headers are larger than the limit (16 KiB)"]
			: err.code === "ERR_HTTP_REQUEST_TIMEOUT"
				? [408, "RequestTimeout", "REQUEST_TIMEOUT", "request", "the request did not arrive in time"]
				: [400, "BadRequest", "BAD_REQUEST", "request", "the request is not valid HTTP"];
	const body = JSON.stringify({ name, message, code: status, type, data: { field } });
	return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

export default function createApiService(deps: ApiDeps): ServiceSchema {
	const { config, clock } = deps;
	// Per API process (each node limits what reaches it): requests per token, per address, and
	// failed authentications per address, the last one strict (a guessed token costs a slot).
	const limits = {
		token: new RateLimiter(config.rateLimits.token),
		address: new RateLimiter(config.rateLimits.address),
		authFailures: new RateLimiter(config.rateLimits.authFailures),
		// How often a rate limit is written to the audit log: once a minute per address and limit.
		auditedLimits: new RateLimiter({ perSecond: 1 / 60, burst: 1 }),
	};
	// Base64 grows by 4/3; the JSON body may carry a little more than the executable.
	const jsonLimit = Math.ceil((config.maxUploadBytes * 4) / 3) + 64 * 1024;
	const onError = function (this: ApiThis, _req: Req, res: ServerResponse, err: unknown) {
		const { status, body } = errorBody(err);
		if (status >= 500 && status !== 503) this.logger.error("Request failed", err);
		res.setHeader("Content-Type", "application/json; charset=utf-8");
		const retryAfter = (body.data as { retryAfter?: unknown } | null)?.retryAfter;
		if (status === 429 && typeof retryAfter === "number") res.setHeader("Retry-After", String(retryAfter));
		res.writeHead(status);
		res.end(JSON.stringify(body));
	};
	const corsOn = config.corsOrigins.length > 0;
	const allowOrigin = (origin: string) => originAllowed(origin, config.corsOrigins);
	/** body-parser's errors reach the first error middleware after the parsers: ours, named. */
	const bodyErrors = function (err: unknown, req: Req, _res: ServerResponse, next: (err?: unknown) => void) {
		const enc = req.headers["content-encoding"];
		next(toMoleculerError(bodyError(err, Array.isArray(enc) ? enc.join(", ") : enc)));
	};
	/** Before authentication: every path parameter (`:id`) is a valid id, else 422 naming it. */
	const checkPathParams = function (this: ApiThis, _ctx: Context, _route: unknown, req: Req, _res: ServerResponse, alias: { fullPath?: string }) {
		try {
			for (const m of (alias.fullPath ?? "").matchAll(/:(\w+)/g)) validatePathId(m[1], req.$params?.[m[1]]);
		} catch (err) {
			throw toMoleculerError(err);
		}
	};
	let patterns: AliasPattern[] | null = null;
	return {
		name: "api",
		mixins: [ApiGateway],
		settings: {
			port: config.port,
			ip: process.env.HOST ?? "0.0.0.0",
			log4XXResponses: false,
			logRequest: "debug",
			logResponse: "debug",
			// Never the bodies or answers (moleculer-web logs them at debug by default): a job's
			// secretEnv values, and a new user's token, would be in them.
			logRequestParams: null,
			logResponseData: null,
			onError,
			// CORS headers on answers to allowed origins (a request from another origin: 403); the
			// preflight is ours (methods.preflight).
			...(corsOn
				? {
						cors: {
							origin: allowOrigin,
							methods: ["GET", "POST", "PATCH", "DELETE"],
							allowedHeaders: CORS_ALLOWED_HEADERS,
							exposedHeaders: CORS_EXPOSED_HEADERS,
							maxAge: CORS_MAX_AGE_S,
						},
					}
				: {}),
			routes: [
				{
					name: "health",
					path: "/",
					authentication: false,
					bodyParsers: { json: false },
					mappingPolicy: "restrict",
					aliases: aliasesOf(ROUTES.filter((r) => r.role === null)),
					onError,
				},
				{
					name: "rest",
					path: "/",
					authentication: true,
					mappingPolicy: "restrict",
					bodyParsers: { json: { limit: jsonLimit, strict: true } },
					// Every route and the role it needs: lib/core/roles.ts ROUTES, checked by authorize().
					authorization: true,
					use: [bodyErrors],
					onBeforeCall: checkPathParams,
					aliases: aliasesOf(ROUTES.filter((r) => r.role !== null)),
					onError,
				},
			],
		},

		created() {
			// moleculer-web's created() (a mixin's runs first) made the server.
			const { server } = this as unknown as { server: Server };
			server.on("clientError", (err: { code?: string }, socket: Duplex) => {
				if (err.code === "ECONNRESET" || !socket.writable) socket.destroy();
				else socket.end(clientErrorResponse(err));
			});
		},

		actions: {
			/**
			 * GET /audit (admins): the jobs service's records (job changes) and the users service's
			 * (user, token and role changes, failed authentications, rate limits) merged, newest first.
			 * Each service's table is written in the transaction of its changes; a page is the merge of
			 * each one's first offset + limit records.
			 */
			audit: {
				params: auditParams(AUDIT_PAGE_MAX),
				async handler(this: ApiThis, ctx: Context<AuditQuery, { user?: AuthUser }>) {
					requireRole(ctx.meta.user, "admin", "Reading the audit log");
					auditFilter(ctx.params); // a bad time is a 422 here, once
					const { limit = 100, offset = 0, ...filters } = ctx.params;
					const ask = { ...filters, limit: offset + limit, offset: 0 };
					const [jobs, users] = await Promise.all([
						ctx.call<{ at: string; id: string }[], AuditQuery>("jobs.audit", ask),
						ctx.call<{ at: string; id: string }[], AuditQuery>("users.audit", ask),
					]);
					return [...jobs, ...users].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : a.id < b.id ? 1 : -1)).slice(offset, offset + limit);
				},
			},

			/**
			 * 200 with each backend's state; 503 when a backend (database, object store, coordination) is
			 * down. Advisory entries (worker clocks) only make the status "degraded", still with 200.
			 */
			health: {
				params: {},
				async handler(this: ApiThis, ctx: Context<Record<string, never>, { $statusCode?: number }>) {
					const backends: Record<string, unknown> = {};
					let ok = true;
					const warnings: string[] = [];
					const ask = async (name: string, action: string) => {
						try {
							const res = await ctx.call<Record<string, { ok: boolean }>, Record<string, never>>(action, {}, { timeout: 2000, retries: 0 });
							for (const [k, v] of Object.entries(res)) {
								// Two services report the same backend (coordination): keep the failing one.
								if (k in backends && (backends[k] as { ok: boolean }).ok === false && v.ok) continue;
								backends[k] = v;
								if (v.ok) continue;
								if (ADVISORY_HEALTH.has(k)) warnings.push(k);
								else ok = false;
							}
						} catch (err) {
							backends[name] = { ok: false, error: (err as Error).message };
							ok = false;
						}
					};
					await Promise.all([ask("jobs", "jobs.health"), ask("manager", "manager.health"), ask("worker", "worker.health")]);
					if (!ok) ctx.meta.$statusCode = 503;
					return {
						status: ok && warnings.length === 0 ? "ok" : "degraded",
						node: this.broker.nodeID,
						backends,
						...(warnings.length > 0 ? { warnings: [...new Set(warnings)] } : {}),
					};
				},
			},
		},

		methods: {
			/** Every request; OPTIONS is only ever a preflight. */
			httpHandler(this: ApiThis, req: Req, res: ServerResponse, next?: unknown) {
				if (req.method === "OPTIONS") return this.preflight(req, res);
				return gatewayHttpHandler.call(this, req, res, next);
			},

			/**
			 * OPTIONS: 204 with `Allow` (the path's methods); from an allowed origin (CRONJOB_CORS_ORIGINS)
			 * with the CORS headers too; from any other origin 403 naming `origin`; a path that is no
			 * route 404. No action runs, and no token is needed (a browser sends none in a preflight).
			 */
			preflight(this: ApiThis, req: Req, res: ServerResponse) {
				patterns ??= aliasPatterns(this.settings.routes);
				const methods = methodsFor(patterns, req.url ?? "/");
				if (methods.length === 0) return onError.call(this, req, res, toMoleculerError(routeNotFound()));
				const headers: Record<string, string | string[] | undefined> = req.headers;
				const origin = Array.isArray(headers.origin) ? headers.origin[0] : headers.origin;
				if (origin !== undefined) {
					const refused = !corsOn
						? "CORS is off: no browser origin may call the API (CRONJOB_CORS_ORIGINS)"
						: allowOrigin(origin)
							? null
							: "this origin may not call the API (CRONJOB_CORS_ORIGINS)";
					if (refused) return onError.call(this, req, res, toMoleculerError(forbidden(refused, "origin")));
					res.setHeader("Access-Control-Allow-Origin", origin);
					res.setHeader("Vary", "Origin");
					res.setHeader("Access-Control-Allow-Methods", methods.join(", "));
					res.setHeader("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS.join(", "));
					res.setHeader("Access-Control-Max-Age", String(CORS_MAX_AGE_S));
				}
				res.setHeader("Allow", [...methods, "OPTIONS"].join(", "));
				res.writeHead(204, { "Content-Length": "0" });
				res.end();
			},

			/** Bearer token -> ctx.meta.user; 401 otherwise (missing, malformed, unknown, revoked, expired). */
			async authenticate(this: ApiThis, ctx: Context, _route: unknown, req: Req): Promise<AuthUser> {
				const now = clock.now();
				const address = clientAddress(req, config.trustProxy);
				// Into the users service's audit table, not awaited (the answer does not wait for it):
				// each failed authentication (bounded by their limit), a rate limit once a minute per address.
				const record = (action: "auth.failed" | "auth.rate_limited", reason: string) => {
					if (action === "auth.rate_limited" && !limits.auditedLimits.take(`${reason}|${address}`, now).ok) return;
					ctx.call("users.recordAuthEvent", { action, address: address.slice(0, 64), reason }).catch(() => undefined);
				};
				const limited = (what: string) => record("auth.rate_limited", `429 ${what}`);
				// An address that failed too often is refused before its token is looked at.
				refused(limits.authFailures.allows(address, now), "authentication", limited);
				refused(limits.address.take(address, now), "address", limited);
				const failed = (message?: string) => {
					limits.authFailures.take(address, now);
					record("auth.failed", message ?? "no bearer token");
					return toMoleculerError(unauthorized(message));
				};
				const headers: Record<string, string | string[] | undefined> = req.headers;
				const header = headers.authorization;
				const value = Array.isArray(header) ? header[0] : header;
				if (!value) throw failed();
				const token = bearerToken(value);
				if (!token) throw failed("Malformed authorization header: expected Bearer <token>");
				let user: AuthUser | null;
				try {
					user = await ctx.call<AuthUser | null, { token: string }>("users.authenticate", { token });
				} catch (err) {
					// An expired token is a failed authentication too.
					if ((err as { code?: unknown }).code === 401) {
						limits.authFailures.take(address, now);
						record("auth.failed", (err as Error).message);
					}
					throw err;
				}
				if (!user) throw failed("Invalid bearer token");
				// Keyed by the token's hash (the token itself is kept nowhere); no hash when there is no limit.
				if (limits.token.limit.perSecond > 0) refused(limits.token.take(createHash("sha256").update(token).digest("hex"), now), "token", limited);
				// For the audit log: where the request came from.
				(ctx.meta as { clientAddress?: string }).clientAddress = address;
				return user;
			},

			/** The route's role (ROUTES), before the action is called; the action checks ownership. */
			authorize(
				this: ApiThis,
				ctx: Context<unknown, { user?: AuthUser | null }>,
				_route: unknown,
				_req: Req,
				_res: ServerResponse,
				alias: { action?: string | null },
			) {
				try {
					authorizeRoute(ctx.meta.user, alias.action);
				} catch (err) {
					throw toMoleculerError(err);
				}
			},
		},
	};
}
