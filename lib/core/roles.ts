/**
 * Roles and every permission decision of the API, pure (no I/O). Four roles, narrowest first:
 * - `viewer`: reads its own jobs (every job with `viewAll`), their runs and executables; changes nothing
 *   but its own tokens;
 * - `member`: creates jobs and reads, changes, runs and deletes its own (a user before roles, not admin);
 * - `operator`: the same over every job; no users, no tokens but its own;
 * - `admin`: everything, including users, other users' tokens and `runAs` root or any account.
 * A request acts with the narrower of its user's role and its token's (a token may be narrowed, never
 * widened). ROUTES is the one table of what each REST route needs: the gateway checks it before the
 * action is called, and the actions still check ownership (jobAccess, tokenAccess) and `runAs`.
 */
import { FieldError, NotFoundError, RoleRequiredError, UnauthorizedError } from "./errors";

export type Role = "viewer" | "member" | "operator" | "admin";

/** Narrowest first: a role has every permission of the roles before it. */
export const ROLES: readonly Role[] = ["viewer", "member", "operator", "admin"];

export function isRole(v: unknown): v is Role {
	return typeof v === "string" && (ROLES as readonly string[]).includes(v);
}

export function atLeast(role: Role, needed: Role): boolean {
	return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export function narrower(a: Role, b: Role): Role {
	return ROLES.indexOf(a) <= ROLES.indexOf(b) ? a : b;
}

/**
 * The role of a stored user row: its `role` column; a row written before roles (role NULL) by its
 * `admin` flag (admin -> admin, else member). A value that is no role grants the least (viewer).
 */
export function storedRole(row: { role?: string | null; admin?: unknown }): Role {
	if (row.role === null || row.role === undefined) return row.admin === true || row.admin === 1 || row.admin === "1" ? "admin" : "member";
	return isRole(row.role) ? row.role : "viewer";
}

/** The role a token acts with: its own (NULL: its user's), never wider than its user's. */
export function tokenRole(userRole: Role, role: string | null | undefined): Role {
	if (role === null || role === undefined) return userRole;
	return narrower(userRole, isRole(role) ? role : "viewer");
}

/**
 * Who is calling, as ctx.meta.user carries it (AuthUser). Internal callers (the REPL, benchmarks) pass
 * only `admin`: their role follows from it.
 */
export interface Caller {
	id: string;
	/** The role this request acts with (the token's). */
	role?: Role;
	/** The user's own role: what a new token of theirs may at most be. */
	userRole?: Role;
	/** Reads every job (granted, or implied by an operator or admin user). */
	viewAll?: boolean;
	admin?: boolean;
}

export function roleOf(c: Caller): Role {
	return c.role ?? (c.admin ? "admin" : "member");
}

export function userRoleOf(c: Caller): Role {
	return c.userRole ?? roleOf(c);
}

/** The caller of a request: the user (its stored row) through one of its tokens. */
export function callerOf(
	user: { id: string; name: string; role?: string | null; admin?: unknown; viewAll?: unknown },
	token: { id: string; name?: string | null; role?: string | null },
): Required<Caller> & { name: string; tokenId: string; tokenName: string | null } {
	const userRole = storedRole(user);
	const role = tokenRole(userRole, token.role);
	// A narrowed token keeps its user's scope: an operator's viewer token reads every job.
	const viewAll = user.viewAll === true || user.viewAll === 1 || user.viewAll === "1" || atLeast(userRole, "operator");
	return { id: user.id, name: user.name, role, userRole, viewAll, admin: role === "admin", tokenId: token.id, tokenName: token.name ?? null };
}

/** 403 naming the role needed unless the caller has it. */
export function requireRole(c: Caller | null | undefined, needed: Role, what: string): Role {
	if (!c) throw new UnauthorizedError();
	const role = roleOf(c);
	if (!atLeast(role, needed)) throw new RoleRequiredError(needed, role, what);
	return role;
}

// ---- routes ----

export interface RouteRule {
	method: "GET" | "POST" | "PATCH" | "DELETE";
	/** moleculer-web's alias path (`:id` for a path parameter). */
	path: string;
	/** The action the route calls (one route per action). */
	action: string;
	/** The narrowest role that may call it; null: no token needed. */
	role: Role | null;
}

/** Every REST route and the role it needs: the gateway's aliases are built from this table. */
export const ROUTES: readonly RouteRule[] = [
	{ method: "GET", path: "/health", action: "api.health", role: null },
	{ method: "GET", path: "/jobs", action: "jobs.listJobs", role: "viewer" },
	{ method: "POST", path: "/jobs", action: "jobs.createJob", role: "member" },
	{ method: "GET", path: "/jobs/:id", action: "jobs.getJob", role: "viewer" },
	{ method: "PATCH", path: "/jobs/:id", action: "jobs.updateJob", role: "member" },
	{ method: "DELETE", path: "/jobs/:id", action: "jobs.removeJob", role: "member" },
	{ method: "POST", path: "/jobs/:id/run", action: "jobs.triggerJob", role: "member" },
	{ method: "GET", path: "/jobs/:id/runs", action: "jobs.jobRuns", role: "viewer" },
	{ method: "GET", path: "/jobs/:id/executable", action: "jobs.jobExecutable", role: "viewer" },
	{ method: "GET", path: "/schedule/preview", action: "jobs.preview", role: "viewer" },
	{ method: "GET", path: "/workers", action: "manager.workers", role: "viewer" },
	{ method: "POST", path: "/users", action: "users.createUser", role: "admin" },
	{ method: "GET", path: "/users", action: "users.listUsers", role: "admin" },
	{ method: "PATCH", path: "/users/:id", action: "users.updateUser", role: "admin" },
	{ method: "DELETE", path: "/users/:id", action: "users.removeUser", role: "admin" },
	{ method: "POST", path: "/tokens", action: "users.createToken", role: "viewer" },
	{ method: "GET", path: "/tokens", action: "users.listTokens", role: "viewer" },
	{ method: "DELETE", path: "/tokens/:id", action: "users.revokeToken", role: "viewer" },
	{ method: "GET", path: "/audit", action: "api.audit", role: "admin" },
];

const BY_ACTION = new Map(ROUTES.map((r) => [r.action, r]));

export function routeOf(action: string | null | undefined): RouteRule | undefined {
	return action ? BY_ACTION.get(action) : undefined;
}

/**
 * The gateway's check before the action: the route's role (a route missing from ROUTES is refused:
 * 403 naming admin, whatever the caller).
 */
export function authorizeRoute(c: Caller | null | undefined, action: string | null | undefined): void {
	const rule = routeOf(action);
	if (!rule) {
		if (!c) throw new UnauthorizedError();
		throw new RoleRequiredError("admin", roleOf(c), "A route with no role declared");
	}
	if (rule.role === null) return;
	requireRole(c, rule.role, `${rule.method} ${rule.path.replace(/:(\w+)/g, "{$1}")}`);
}

// ---- jobs ----

/** The caller reads every job, not only its own. */
export function readsAllJobs(c: Caller): boolean {
	return c.viewAll === true || atLeast(roleOf(c), "operator");
}

/**
 * Reading or changing (change, delete, run) a job: 404 for a job the caller may not see (the same
 * answer as an unknown id, on purpose), 403 naming the role for one it sees but may not change.
 */
export function requireJobAccess(c: Caller, job: { id: string; owner: string }, mode: "read" | "write"): void {
	const mine = job.owner === c.id;
	if (!mine && !readsAllJobs(c)) throw new NotFoundError("Job", job.id);
	if (mode === "read") return;
	const needed: Role = mine ? "member" : "operator";
	const role = roleOf(c);
	if (!atLeast(role, needed)) throw new RoleRequiredError(needed, role, mine ? "Changing or running a job" : "Changing or running another user's job");
}

/**
 * Whether the caller may have a job run as `runAs` (null: the worker's default account): admins any
 * account; the others never root, and only the accounts of CRONJOB_USER_RUN_AS (undefined: any but
 * root). The same rule as the `runAs` field's (job-rules.ts), for a job already stored.
 */
export function mayRunAs(c: Caller, runAs: string | null, userRunAs: readonly string[] | undefined): boolean {
	if (runAs === null || roleOf(c) === "admin") return true;
	if (runAs === "root" || runAs === "0") return false;
	return !userRunAs || userRunAs.includes(runAs);
}

/** Changing or running a stored job that runs as an account the caller may not name: 403 naming admin. */
export function requireRunAs(c: Caller, job: { runAs: string | null }, userRunAs: readonly string[] | undefined): void {
	if (mayRunAs(c, job.runAs, userRunAs)) return;
	throw new RoleRequiredError("admin", roleOf(c), `Changing or running a job that runs as ${job.runAs}`, "runAs");
}

// ---- users and tokens ----

/** A new user's role from POST /users: `role`, or the older `admin` flag; both must agree. */
export function newUserRole(input: { role?: unknown; admin?: unknown }): Role {
	const { role, admin } = input;
	if (role === undefined || role === null) return admin === true ? "admin" : "member";
	if (!isRole(role)) throw new FieldError("role", `role must be one of ${ROLES.join(", ")}`);
	if (typeof admin === "boolean" && admin !== (role === "admin")) throw new FieldError("admin", `admin: ${admin} contradicts role ${role}`);
	return role;
}

/**
 * The role stored on a new token: the one asked for, at most the caller's; none asked: NULL (it
 * follows its user's role) from a token acting with the user's full role, else the caller's narrower
 * one (a narrowed token never mints a wider one).
 */
export function newTokenRole(c: Caller, requested: Role | null | undefined): Role | null {
	const role = roleOf(c);
	if (requested !== undefined && requested !== null) {
		if (!atLeast(role, requested)) throw new RoleRequiredError(requested, role, `A token with the ${requested} role`, "role");
		return requested;
	}
	return role === userRoleOf(c) ? null : role;
}

/**
 * Listing tokens (`user`: whose; default the caller's): one's own, or any user's for an admin (403
 * naming admin otherwise).
 */
export function requireTokenListing(c: Caller, user: string | undefined): string {
	if (user === undefined || user === c.id) return c.id;
	requireRole(c, "admin", "Listing another user's tokens");
	return user;
}

/**
 * Revoking a token: one's own, if the request's token is at least as wide as it (a narrowed token
 * cannot revoke a wider one: 403 naming the role), or any token for an admin; another user's token is
 * a 404 for the others (the same answer as an unknown id).
 */
export function requireTokenRevocation(c: Caller, token: { id: string; userId: string; role: string | null }): void {
	const role = roleOf(c);
	if (token.userId !== c.id) {
		if (role !== "admin") throw new NotFoundError("Token", token.id);
		return;
	}
	const target = tokenRole(userRoleOf(c), token.role);
	if (!atLeast(role, target)) throw new RoleRequiredError(target, role, `Revoking a token with the ${target} role`);
}

/** A role change (PATCH /users/{id}): the new role, or the old one when none is given. */
export function changedRole(current: Role, input: { role?: unknown }): Role {
	if (input.role === undefined) return current;
	if (!isRole(input.role)) throw new FieldError("role", `role must be one of ${ROLES.join(", ")}`);
	return input.role;
}
