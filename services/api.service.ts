/**
 * api.gateway: the REST API on moleculer-web. Its routes and the role each needs are one table,
 * lib/core/roles.ts ROUTES; every route but GET /health needs a bearer token (401) of a role at least
 * the route's (403 naming it), checked here before the action is called;
 * errors are JSON {name, message, code, type, data} with data.field naming the offending field.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { Config } from "../lib/config";
import { RateLimitedError, unauthorized, unavailable, type UnavailableError } from "../lib/core/errors";
import { toMoleculerError } from "../lib/adapters/moleculer/errors";
import { authorizeRoute, ROUTES, type RouteRule } from "../lib/core/roles";
import type { AuthUser } from "../lib/core/types";
import type { Clock } from "../lib/core/clock";
import { RateLimiter, type Take } from "../lib/core/rate-limit";

/**
 * Health entries that are reported but never make /health answer 503: a worker with a bad clock gets
 * no jobs (the manager excludes it), and HAProxy must not take the API out because of it.
 */
export const ADVISORY_HEALTH = new Set(["workerClocks", "workerClock"]);

export interface ApiDeps {
	config: Config;
	clock: Clock;
}

type Req = IncomingMessage & { $ctx?: Context; headers: Record<string, string | string[] | undefined> };

interface ApiThis extends Service {
	settings: { port: number };
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
		const first = data[0] as { field?: string; message?: string } | undefined;
		data = { field: first?.field ?? null, errors: data };
		if (first?.message) message = first.message;
	}
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

/** A refusal as the 429 it answers (Retry-After in whole seconds, at least 1). */
function refused(take: Take, what: "token" | "address" | "authentication"): void {
	if (!take.ok) throw toMoleculerError(new RateLimitedError(Math.max(1, Math.ceil(take.retryAfterMs / 1000)), what));
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

export default function createApiService(deps: ApiDeps): ServiceSchema {
	const { config, clock } = deps;
	// Per API process (each node limits what reaches it): requests per token, per address, and
	// failed authentications per address, the last one strict (a guessed token costs a slot).
	const limits = {
		token: new RateLimiter(config.rateLimits.token),
		address: new RateLimiter(config.rateLimits.address),
		authFailures: new RateLimiter(config.rateLimits.authFailures),
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
					aliases: aliasesOf(ROUTES.filter((r) => r.role !== null)),
					onError,
				},
			],
		},

		actions: {
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
			/** Bearer token -> ctx.meta.user; 401 otherwise (missing, malformed, unknown, revoked, expired). */
			async authenticate(this: ApiThis, ctx: Context, _route: unknown, req: Req): Promise<AuthUser> {
				const now = clock.now();
				const address = clientAddress(req, config.trustProxy);
				// An address that failed too often is refused before its token is looked at.
				refused(limits.authFailures.allows(address, now), "authentication");
				refused(limits.address.take(address, now), "address");
				const failed = (message?: string) => {
					limits.authFailures.take(address, now);
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
					if ((err as { code?: unknown }).code === 401) limits.authFailures.take(address, now);
					throw err;
				}
				if (!user) throw failed("Invalid bearer token");
				refused(limits.token.take(createHash("sha256").update(token).digest("hex"), now), "token");
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
