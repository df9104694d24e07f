/**
 * lib/core/roles.ts and lib/core/tokens.ts: the role table, the route table and every permission
 * decision, table-driven.
 */
import { FieldError, NotFoundError, RoleRequiredError, UnauthorizedError } from "../../lib/core/errors";
import {
	atLeast,
	authorizeRoute,
	callerOf,
	changedRole,
	mayRunAs,
	narrower,
	newTokenRole,
	newUserRole,
	readsAllJobs,
	requireJobAccess,
	requireRunAs,
	requireTokenListing,
	requireTokenRevocation,
	ROLES,
	ROUTES,
	storedRole,
	tokenRole,
	type Caller,
	type Role,
} from "../../lib/core/roles";
import { expiryOf, isExpired, shouldTouch, TOKEN_TOUCH_INTERVAL_MS, tokenName, tokenView } from "../../lib/core/tokens";

/** What fn throws: "ok", or the error's class name with the role it names (403) or the field. */
function outcome(fn: () => unknown): string {
	try {
		fn();
		return "ok";
	} catch (e) {
		if (e instanceof RoleRequiredError) return `403 ${e.requiredRole}${e.data.field ? ` ${e.data.field}` : ""}`;
		if (e instanceof NotFoundError) return "404";
		if (e instanceof UnauthorizedError) return "401";
		if (e instanceof FieldError) return `422 ${e.field}`;
		throw e;
	}
}

const caller = (role: Role, over: Partial<Caller> = {}): Caller => ({ id: "me", role, userRole: role, viewAll: atLeast(role, "operator"), ...over });

describe("the role order", () => {
	test("narrowest first; each role has the permissions of those before it", () => {
		expect(ROLES).toEqual(["viewer", "member", "operator", "admin"]);
		for (const [a, b, expected] of [
			["viewer", "viewer", true],
			["member", "viewer", true],
			["viewer", "member", false],
			["operator", "member", true],
			["member", "operator", false],
			["admin", "operator", true],
			["operator", "admin", false],
		] as const) {
			expect(atLeast(a, b)).toBe(expected);
		}
		expect(narrower("admin", "viewer")).toBe("viewer");
		expect(narrower("member", "operator")).toBe("member");
	});

	test.each<[{ role?: string | null; admin?: unknown }, Role]>([
		[{ role: null, admin: true }, "admin"],
		[{ role: null, admin: 1 }, "admin"],
		[{ role: null, admin: false }, "member"],
		[{ role: null, admin: 0 }, "member"],
		[{ admin: true }, "admin"],
		[{ role: "operator", admin: false }, "operator"],
		[{ role: "viewer", admin: true }, "viewer"],
		[{ role: "superuser", admin: true }, "viewer"],
	])("a stored user %j has the role %s (rows from before roles: by the admin flag)", (row, role) => {
		expect(storedRole(row)).toBe(role);
	});

	test.each<[Role, string | null, Role]>([
		["admin", null, "admin"],
		["admin", "viewer", "viewer"],
		["member", "member", "member"],
		["member", "admin", "member"],
		["viewer", "operator", "viewer"],
		["operator", "bogus", "viewer"],
	])("a %s user's token with role %s acts as %s (never wider than its user)", (user, token, expected) => {
		expect(tokenRole(user, token)).toBe(expected);
	});

	test("callerOf: the token's role, the user's role, the job scope", () => {
		expect(callerOf({ id: "u", name: "n", role: null, admin: 1, viewAll: null }, { id: "t", role: null })).toEqual({
			id: "u",
			name: "n",
			role: "admin",
			userRole: "admin",
			viewAll: true,
			admin: true,
			tokenId: "t",
			tokenName: null,
		});
		expect(callerOf({ id: "u", name: "n", role: "operator", admin: 0, viewAll: 0 }, { id: "t", role: "viewer" })).toMatchObject({
			role: "viewer",
			userRole: "operator",
			viewAll: true,
			admin: false,
		});
		expect(callerOf({ id: "u", name: "n", role: "viewer", admin: 0, viewAll: 1 }, { id: "t", role: null })).toMatchObject({ role: "viewer", viewAll: true });
		expect(callerOf({ id: "u", name: "n", role: "member", admin: 0, viewAll: null }, { id: "t", role: null })).toMatchObject({
			role: "member",
			viewAll: false,
		});
	});
});

describe("the route table", () => {
	test("one route per action, one action per route; only GET /health needs no token", () => {
		expect(new Set(ROUTES.map((r) => r.action)).size).toBe(ROUTES.length);
		expect(new Set(ROUTES.map((r) => `${r.method} ${r.path}`)).size).toBe(ROUTES.length);
		expect(ROUTES.filter((r) => r.role === null).map((r) => `${r.method} ${r.path}`)).toEqual(["GET /health"]);
	});

	const routes = Object.fromEntries(ROUTES.map((r) => [`${r.method} ${r.path}`, r.action]));
	// route: [viewer, member, operator, admin]
	const TABLE: [string, string, string, string, string][] = [
		["GET /jobs", "ok", "ok", "ok", "ok"],
		["POST /jobs", "403 member", "ok", "ok", "ok"],
		["GET /jobs/:id", "ok", "ok", "ok", "ok"],
		["PATCH /jobs/:id", "403 member", "ok", "ok", "ok"],
		["DELETE /jobs/:id", "403 member", "ok", "ok", "ok"],
		["POST /jobs/:id/run", "403 member", "ok", "ok", "ok"],
		["GET /jobs/:id/runs", "ok", "ok", "ok", "ok"],
		["GET /jobs/:id/executable", "ok", "ok", "ok", "ok"],
		["GET /schedule/preview", "ok", "ok", "ok", "ok"],
		["GET /workers", "ok", "ok", "ok", "ok"],
		["POST /users", "403 admin", "403 admin", "403 admin", "ok"],
		["GET /users", "403 admin", "403 admin", "403 admin", "ok"],
		["PATCH /users/:id", "403 admin", "403 admin", "403 admin", "ok"],
		["DELETE /users/:id", "403 admin", "403 admin", "403 admin", "ok"],
		["POST /tokens", "ok", "ok", "ok", "ok"],
		["GET /tokens", "ok", "ok", "ok", "ok"],
		["DELETE /tokens/:id", "ok", "ok", "ok", "ok"],
		["GET /audit", "403 admin", "403 admin", "403 admin", "ok"],
	];

	test("the table covers every route that needs a token", () => {
		expect(TABLE.map((r) => r[0]).sort()).toEqual(
			ROUTES.filter((r) => r.role !== null)
				.map((r) => `${r.method} ${r.path}`)
				.sort(),
		);
	});

	test.each(TABLE)("%s: viewer %s, member %s, operator %s, admin %s", (route, ...expected) => {
		const action = routes[route];
		expect(ROLES.map((role) => outcome(() => authorizeRoute(caller(role), action)))).toEqual(expected);
		expect(outcome(() => authorizeRoute(null, action))).toBe("401");
	});

	test("GET /health needs no caller; an action with no route is refused to every role", () => {
		expect(outcome(() => authorizeRoute(null, "api.health"))).toBe("ok");
		expect(outcome(() => authorizeRoute(caller("admin"), "jobs.startRuns"))).toBe("403 admin");
		expect(outcome(() => authorizeRoute(caller("member"), undefined))).toBe("403 admin");
		expect(outcome(() => authorizeRoute(null, "jobs.startRuns"))).toBe("401");
	});

	test("the 403 names the route and both roles", () => {
		try {
			authorizeRoute(caller("member"), "users.listUsers");
			throw new Error("no error");
		} catch (e) {
			expect(e).toBeInstanceOf(RoleRequiredError);
			expect((e as RoleRequiredError).message).toBe("GET /users needs the admin role (this request has member)");
			expect((e as RoleRequiredError).data).toMatchObject({ requiredRole: "admin", role: "member" });
			expect((e as RoleRequiredError).code).toBe(403);
		}
	});
});

describe("jobs: ownership, scope and runAs", () => {
	const own = { id: "j1", owner: "me" };
	const theirs = { id: "j2", owner: "someone" };
	// caller: [read own, write own, read theirs, write theirs]
	test.each<[string, Caller, string, string, string, string]>([
		["viewer", caller("viewer"), "ok", "403 member", "404", "404"],
		["viewer with viewAll", caller("viewer", { viewAll: true }), "ok", "403 member", "ok", "403 operator"],
		["member", caller("member"), "ok", "ok", "404", "404"],
		["member with viewAll", caller("member", { viewAll: true }), "ok", "ok", "ok", "403 operator"],
		["operator", caller("operator"), "ok", "ok", "ok", "ok"],
		["admin", caller("admin"), "ok", "ok", "ok", "ok"],
		["an operator's viewer token", caller("viewer", { userRole: "operator", viewAll: true }), "ok", "403 member", "ok", "403 operator"],
		["an internal caller (admin flag only)", { id: "me", admin: true }, "ok", "ok", "ok", "ok"],
		["an internal caller (no admin flag)", { id: "me", admin: false }, "ok", "ok", "404", "404"],
	])("%s: read own %s, write own %s, read others' %s, write others' %s", (_what, c, ...expected) => {
		expect([
			outcome(() => requireJobAccess(c, own, "read")),
			outcome(() => requireJobAccess(c, own, "write")),
			outcome(() => requireJobAccess(c, theirs, "read")),
			outcome(() => requireJobAccess(c, theirs, "write")),
		]).toEqual(expected);
		expect(readsAllJobs(c)).toBe(expected[2] === "ok");
	});

	const RUN_AS = ["nobody", "cron"];
	// runAs: [viewer, member, operator, admin]
	test.each<[string | null, boolean, boolean, boolean, boolean]>([
		[null, true, true, true, true],
		["nobody", true, true, true, true],
		["cron", true, true, true, true],
		["root", false, false, false, true],
		["0", false, false, false, true],
		["daemon", false, false, false, true],
	])("runAs %s: viewer %s, member %s, operator %s, admin %s", (runAs, ...expected) => {
		expect(ROLES.map((r) => mayRunAs(caller(r), runAs, RUN_AS))).toEqual(expected);
		expect(ROLES.map((r) => outcome(() => requireRunAs(caller(r), { runAs }, RUN_AS)))).toEqual(expected.map((ok) => (ok ? "ok" : "403 admin runAs")));
	});

	test("without a CRONJOB_USER_RUN_AS list: any account but root", () => {
		expect(mayRunAs(caller("operator"), "daemon", undefined)).toBe(true);
		expect(mayRunAs(caller("operator"), "root", undefined)).toBe(false);
	});
});

describe("users and tokens", () => {
	test.each<[{ role?: unknown; admin?: unknown }, string]>([
		[{}, "member"],
		[{ admin: false }, "member"],
		[{ admin: true }, "admin"],
		[{ role: "viewer" }, "viewer"],
		[{ role: "operator", admin: false }, "operator"],
		[{ role: "admin", admin: true }, "admin"],
		[{ role: "admin", admin: false }, "422 admin"],
		[{ role: "viewer", admin: true }, "422 admin"],
		[{ role: "root" }, "422 role"],
	])("a new user %j: %s", (input, expected) => {
		let got = "";
		const res = outcome(() => (got = newUserRole(input)));
		expect(res === "ok" ? got : res).toBe(expected);
	});

	test("a role change", () => {
		expect(changedRole("member", {})).toBe("member");
		expect(changedRole("member", { role: "operator" })).toBe("operator");
		expect(outcome(() => changedRole("member", { role: "god" }))).toBe("422 role");
	});

	// [the request's role, the user's role, the role asked for, what is stored or the error]
	test.each<[Role, Role, Role | null | undefined, string]>([
		["member", "member", undefined, "null"],
		["viewer", "member", null, "viewer"],
		["member", "member", "viewer", "viewer"],
		["member", "member", "member", "member"],
		["member", "member", "operator", "403 operator role"],
		["viewer", "member", undefined, "viewer"],
		["viewer", "member", "member", "403 member role"],
		["admin", "admin", "operator", "operator"],
		["operator", "admin", undefined, "operator"],
		["operator", "admin", "admin", "403 admin role"],
	])("a token made by a %s request of a %s user, role %s: %s", (role, userRole, requested, expected) => {
		let got: Role | null = null;
		const res = outcome(() => (got = newTokenRole({ id: "me", role, userRole }, requested)));
		expect(res === "ok" ? String(got) : res).toBe(expected);
	});

	test("listing tokens: one's own; another user's for admins only", () => {
		expect(requireTokenListing(caller("viewer"), undefined)).toBe("me");
		expect(requireTokenListing(caller("member"), "me")).toBe("me");
		expect(outcome(() => requireTokenListing(caller("operator"), "other"))).toBe("403 admin");
		expect(requireTokenListing(caller("admin"), "other")).toBe("other");
	});

	// [the request's role, the user's role, the token's owner and role, the outcome]
	test.each<[Role, Role, string, string | null, string]>([
		["member", "member", "me", null, "ok"],
		["member", "member", "me", "viewer", "ok"],
		["viewer", "member", "me", "viewer", "ok"],
		["viewer", "member", "me", null, "403 member"],
		["viewer", "member", "me", "member", "403 member"],
		["operator", "admin", "me", null, "403 admin"],
		["operator", "admin", "me", "admin", "403 admin"],
		["member", "member", "other", null, "404"],
		["operator", "operator", "other", "viewer", "404"],
		["admin", "admin", "other", null, "ok"],
	])("revoking: a %s request of a %s user, a token of %s with role %s: %s", (role, userRole, owner, tokenRoleAsked, expected) => {
		expect(outcome(() => requireTokenRevocation({ id: "me", role, userRole }, { id: "t", userId: owner, role: tokenRoleAsked }))).toBe(expected);
	});
});

describe("token fields, expiry and last use", () => {
	const NOW = Date.parse("2026-12-01T12:00:00Z");

	test.each<[unknown, number | null | string]>([
		[undefined, null],
		[null, null],
		["2026-12-01T12:00:01Z", NOW + 1000],
		["2026-12-01T13:00:00+01:00", "422 expiresAt"],
		["2026-12-01T14:00:00.500+01:00", NOW + 3_600_500],
		["2026-12-01T12:00:00Z", "422 expiresAt"],
		["2026-12-01", "422 expiresAt"],
		["tomorrow", "422 expiresAt"],
		["2026-13-01T00:00:00Z", "422 expiresAt"],
		[1_900_000_000_000, "422 expiresAt"],
	])("expiresAt %j: %s", (v, expected) => {
		let got: number | null = null;
		const res = outcome(() => (got = expiryOf(v, NOW)));
		expect(res === "ok" ? got : res).toBe(expected);
	});

	test("expired at and after expiresAt; never without one", () => {
		expect(isExpired(null, NOW)).toBe(false);
		expect(isExpired(NOW + 1, NOW)).toBe(false);
		expect(isExpired(NOW, NOW)).toBe(true);
		expect(isExpired(NOW - 1, NOW)).toBe(true);
	});

	test("last use is written when never written or a minute old, not on every request", () => {
		expect(TOKEN_TOUCH_INTERVAL_MS).toBe(60_000);
		expect(shouldTouch(null, NOW)).toBe(true);
		expect(shouldTouch(NOW, NOW)).toBe(false);
		expect(shouldTouch(NOW - 59_999, NOW)).toBe(false);
		expect(shouldTouch(NOW - 60_000, NOW)).toBe(true);
	});

	test.each<[unknown, string]>([
		["ci", "ok"],
		["laptop 2", "ok"],
		["deploy:prod-1", "ok"],
		["x".repeat(64), "ok"],
		["x".repeat(65), "422 name"],
		["", "422 name"],
		[" lead", "422 name"],
		["trail ", "422 name"],
		["tab\there", "422 name"],
		[5, "422 name"],
	])("token name %j: %s", (v, expected) => {
		expect(outcome(() => tokenName(v))).toBe(expected);
	});

	test("the view has no secret and no hash", () => {
		const v = tokenView({ id: "t", userId: "u", name: "ci", role: "viewer", expiresAt: NOW, createdAt: NOW - 1000, lastUsedAt: null }, NOW, "t");
		expect(v).toEqual({
			id: "t",
			user: "u",
			name: "ci",
			role: "viewer",
			expiresAt: "2026-12-01T12:00:00.000Z",
			expired: true,
			createdAt: "2026-12-01T11:59:59.000Z",
			lastUsedAt: null,
			current: true,
		});
	});
});
