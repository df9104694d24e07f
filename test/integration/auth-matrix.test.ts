/**
 * Who may call what, end to end: every REST route against every kind of caller, on a real node (the
 * SQLite default, its own temporary data folder), as one table of expected statuses. Then the rules
 * the table cannot show: narrowed tokens, runAs for operators, role changes, token listing, last use,
 * and revocation seen at once by a second API node.
 */
import * as fs from "node:fs";
import { randomBytes } from "node:crypto";
import { ADMIN_TOKEN, startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const CALLERS = ["none", "malformed", "wrong", "expired", "revoked", "viewer", "viewerAll", "member", "other", "operator", "admin"] as const;
type CallerName = (typeof CALLERS)[number];

/** A request to make for one cell: built fresh for each caller (a DELETE needs its own target). */
type Cell = { method: string; path: string; body?: unknown };

/** route | no token | malformed | wrong | expired | revoked | viewer | viewer (viewAll) | member | another member | operator | admin. Targets belong to `member`. */
// prettier-ignore
const MATRIX: [string, number, number, number, number, number, number, number, number, number, number, number][] = [
	["GET /health",                   200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
	["GET /jobs",                     401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200],
	["POST /jobs",                    401, 401, 401, 401, 401, 403, 403, 201, 201, 201, 201],
	["GET /jobs/{id}",                401, 401, 401, 401, 401, 404, 200, 200, 404, 200, 200],
	["PATCH /jobs/{id}",              401, 401, 401, 401, 401, 403, 403, 200, 404, 200, 200],
	["DELETE /jobs/{id}",             401, 401, 401, 401, 401, 403, 403, 200, 404, 200, 200],
	["POST /jobs/{id}/run",           401, 401, 401, 401, 401, 403, 403, 202, 404, 202, 202],
	["GET /jobs/{id}/runs",           401, 401, 401, 401, 401, 404, 200, 200, 404, 200, 200],
	["GET /jobs/{id}/executable",     401, 401, 401, 401, 401, 404, 200, 200, 404, 200, 200],
	["GET /schedule/preview",         401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200],
	["GET /workers",                  401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200],
	["POST /users",                   401, 401, 401, 401, 401, 403, 403, 403, 403, 403, 201],
	["GET /users",                    401, 401, 401, 401, 401, 403, 403, 403, 403, 403, 200],
	["PATCH /users/{id}",             401, 401, 401, 401, 401, 403, 403, 403, 403, 403, 200],
	["DELETE /users/{id}",            401, 401, 401, 401, 401, 403, 403, 403, 403, 403, 200],
	["POST /tokens",                  401, 401, 401, 401, 401, 201, 201, 201, 201, 201, 201],
	["GET /tokens",                   401, 401, 401, 401, 401, 200, 200, 200, 200, 200, 200],
	["GET /tokens?user={member}",     401, 401, 401, 401, 401, 403, 403, 200, 403, 403, 200],
	["DELETE /tokens/{id}",           401, 401, 401, 401, 401, 404, 404, 200, 404, 404, 200],
	["GET /audit",                    401, 401, 401, 401, 401, 403, 403, 403, 403, 403, 200],
];

/** Headers that are no valid bearer credentials: each must be a 401 (on GET /health: ignored). */
const MALFORMED = ["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer two words", "Token abc", `Bearer ${"x".repeat(600)}`, "Bearer\tabc"];

let node: TestNode;
const tokens = {} as Record<CallerName, string | null>;
const ids = {} as Record<"viewer" | "viewerAll" | "member" | "other" | "operator", string>;
let seq = 0;
const unique = (prefix: string) => `${prefix}-${++seq}-${randomBytes(3).toString("hex")}`;

const job = (over: Record<string, unknown> = {}) => ({ type: "command", executable: "true", schedule: "0 0 1 1 *", ...over });
const SCRIPT = Buffer.from("#!/bin/sh\ntrue\n").toString("base64");

async function call(method: string, path: string, token: string | null, body?: unknown) {
	return node.request(method, path, { token, body });
}

async function ok<T = any>(method: string, path: string, token: string | null, body: unknown, status: number): Promise<T> {
	const res = await call(method, path, token, body);
	if (res.status !== status) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
	return res.body as T;
}

async function newUser(over: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
	const body = await ok("POST", "/users", ADMIN_TOKEN, { name: unique("u"), ...over }, 201);
	return { id: body.id, token: body.token };
}

const memberJob = async (over: Record<string, unknown> = {}) => (await ok("POST", "/jobs", tokens.member, job(over), 201)).id as string;

/** The request of a row, with fresh targets owned by `member`. */
const CELLS: Record<string, () => Promise<Cell>> = {
	"GET /health": async () => ({ method: "GET", path: "/health" }),
	"GET /jobs": async () => ({ method: "GET", path: "/jobs" }),
	"POST /jobs": async () => ({ method: "POST", path: "/jobs", body: job() }),
	"GET /jobs/{id}": async () => ({ method: "GET", path: `/jobs/${await memberJob()}` }),
	"PATCH /jobs/{id}": async () => ({ method: "PATCH", path: `/jobs/${await memberJob()}`, body: { name: "renamed" } }),
	"DELETE /jobs/{id}": async () => ({ method: "DELETE", path: `/jobs/${await memberJob()}` }),
	"POST /jobs/{id}/run": async () => ({ method: "POST", path: `/jobs/${await memberJob()}/run` }),
	"GET /jobs/{id}/runs": async () => ({ method: "GET", path: `/jobs/${await memberJob()}/runs` }),
	"GET /jobs/{id}/executable": async () => ({ method: "GET", path: `/jobs/${await memberJob({ type: "script", executable: SCRIPT })}/executable` }),
	"GET /schedule/preview": async () => ({ method: "GET", path: `/schedule/preview?schedule=${encodeURIComponent("*/5 * * * *")}&count=2` }),
	"GET /workers": async () => ({ method: "GET", path: "/workers" }),
	"POST /users": async () => ({ method: "POST", path: "/users", body: { name: unique("new") } }),
	"GET /users": async () => ({ method: "GET", path: "/users" }),
	"PATCH /users/{id}": async () => ({ method: "PATCH", path: `/users/${(await newUser()).id}`, body: { role: "viewer" } }),
	"DELETE /users/{id}": async () => ({ method: "DELETE", path: `/users/${(await newUser()).id}` }),
	"POST /tokens": async () => ({ method: "POST", path: "/tokens", body: { name: unique("t") } }),
	"GET /tokens": async () => ({ method: "GET", path: "/tokens" }),
	"GET /tokens?user={member}": async () => ({ method: "GET", path: `/tokens?user=${ids.member}` }),
	"GET /audit": async () => ({ method: "GET", path: "/audit?limit=5" }),
	"DELETE /tokens/{id}": async () => ({
		method: "DELETE",
		path: `/tokens/${(await ok("POST", "/tokens", tokens.member, { name: unique("victim") }, 201)).id}`,
	}),
};

beforeAll(async () => {
	node = await startNode();
	tokens.none = null;
	tokens.admin = ADMIN_TOKEN;
	tokens.wrong = randomBytes(32).toString("base64url");
	for (const [name, over] of [
		["viewer", { role: "viewer" }],
		["viewerAll", { role: "viewer", viewAll: true }],
		["member", {}],
		["other", { role: "member" }],
		["operator", { role: "operator" }],
	] as const) {
		const u = await newUser(over);
		ids[name] = u.id;
		tokens[name] = u.token;
	}
	const soon = new Date(Date.now() + 1000).toISOString();
	const expiring = await ok("POST", "/tokens", tokens.member, { name: "expiring", expiresAt: soon }, 201);
	tokens.expired = expiring.token;
	expect((await call("GET", "/jobs", tokens.expired)).status).toBe(200);
	const revoked = await ok("POST", "/tokens", tokens.member, { name: "revoked" }, 201);
	tokens.revoked = revoked.token;
	expect((await call("GET", "/jobs", tokens.revoked)).status).toBe(200);
	await ok("DELETE", `/tokens/${revoked.id}`, tokens.member, undefined, 200);
	await waitFor(() => Date.now() > Date.parse(soon) + 50, 5000, "the token's expiry");
	tokens.malformed = null;
});

afterAll(async () => {
	await node?.stop();
	if (node) fs.rmSync(node.dataDir, { recursive: true, force: true });
});

describe("the auth matrix: every route x every caller", () => {
	test("the table covers every route of the API", () => {
		expect(MATRIX.map((r) => r[0]).sort()).toEqual(Object.keys(CELLS).sort());
	});

	test.each(MATRIX)("%s", async (route, ...expected) => {
		const got: Record<string, number | string> = {};
		for (const who of CALLERS) {
			const cell = await CELLS[route]();
			if (who === "malformed") {
				const statuses = new Set<number>();
				for (const authorization of MALFORMED) {
					const res = await node.request(cell.method, cell.path, { token: null, body: cell.body, headers: { authorization } });
					statuses.add(res.status);
					if (res.status === 401) expect(res.body).toMatchObject({ code: 401, type: "UNAUTHORIZED", data: { field: "authorization" } });
				}
				got[who] = statuses.size === 1 ? [...statuses][0] : [...statuses].join("/");
				continue;
			}
			const res = await call(cell.method, cell.path, tokens[who], cell.body);
			got[who] = res.status;
			if (res.status === 401) expect(res.body).toMatchObject({ code: 401, type: "UNAUTHORIZED", data: { field: "authorization" } });
			if (res.status === 403) {
				// The 403 names the role needed and the caller's.
				expect(res.body).toMatchObject({ code: 403, type: "FORBIDDEN", data: { requiredRole: expect.any(String), role: expect.any(String) } });
				expect(res.body.message).toContain(`the ${res.body.data.requiredRole} role`);
			}
		}
		expect(got).toEqual(Object.fromEntries(CALLERS.map((who, i) => [who, expected[i]])));
	});

	test("the 401s say why: missing, malformed, invalid, expired", async () => {
		expect((await call("GET", "/jobs", null)).body.message).toBe("Missing or invalid bearer token");
		expect((await node.request("GET", "/jobs", { token: null, headers: { authorization: "Basic x" } })).body.message).toMatch(/Malformed/);
		expect((await call("GET", "/jobs", tokens.wrong)).body.message).toBe("Invalid bearer token");
		expect((await call("GET", "/jobs", tokens.revoked)).body.message).toBe("Invalid bearer token");
		expect((await call("GET", "/jobs", tokens.expired)).body.message).toBe("The bearer token has expired");
	});

	test("a viewer's 403 names the role the route needs", async () => {
		const res = await call("POST", "/jobs", tokens.viewer, job());
		expect(res.body).toMatchObject({ message: "POST /jobs needs the member role (this request has viewer)", data: { requiredRole: "member", role: "viewer" } });
		expect((await call("GET", "/users", tokens.operator)).body.data).toMatchObject({ requiredRole: "admin", role: "operator" });
	});
});

describe("scopes: what each caller sees", () => {
	test("GET /jobs: own jobs for members and viewers; all for viewAll, operators and admins", async () => {
		const mine = await memberJob();
		const theirs = (await ok("POST", "/jobs", tokens.other, job(), 201)).id as string;
		const list = async (who: CallerName) => (await ok<any[]>("GET", "/jobs?limit=1000", tokens[who], undefined, 200)).map((j) => j.id as string);
		expect(await list("member")).toContain(mine);
		expect(await list("member")).not.toContain(theirs);
		expect(await list("other")).not.toContain(mine);
		expect(await list("viewer")).toEqual([]);
		for (const who of ["viewerAll", "operator", "admin"] as const) expect(await list(who)).toEqual(expect.arrayContaining([mine, theirs]));
	});

	test("a member demoted to viewer reads its own jobs and changes none; promoted to operator, changes every job", async () => {
		const u = await newUser();
		const own = (await ok("POST", "/jobs", u.token, job(), 201)).id as string;
		const theirs = await memberJob();
		await ok("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { role: "viewer" }, 200);
		expect((await call("GET", `/jobs/${own}`, u.token)).status).toBe(200);
		expect((await call("GET", "/jobs", u.token)).body.map((j: any) => j.id)).toEqual([own]);
		const patch = await call("PATCH", `/jobs/${own}`, u.token, { name: "x" });
		expect(patch.status).toBe(403);
		expect(patch.body.data.requiredRole).toBe("member");
		expect((await call("GET", `/jobs/${theirs}`, u.token)).status).toBe(404);
		const promoted = await ok("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { role: "operator" }, 200);
		expect(promoted).toMatchObject({ role: "operator", admin: false });
		expect((await call("PATCH", `/jobs/${theirs}`, u.token, { name: "by operator" })).status).toBe(200);
		expect((await call("GET", "/users", u.token)).status).toBe(403);
	});

	test("PATCH /users/{id}: role and viewAll; refuses a wrong role, one's own role and the built-in admin's", async () => {
		const u = await newUser({ role: "viewer" });
		const theirs = await memberJob();
		expect((await call("GET", `/jobs/${theirs}`, u.token)).status).toBe(404);
		expect(await ok("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { viewAll: true }, 200)).toMatchObject({ role: "viewer", viewAll: true });
		expect((await call("GET", `/jobs/${theirs}`, u.token)).status).toBe(200);
		const bad = await call("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { role: "root" });
		expect(bad.status).toBe(422);
		expect(bad.body.data.field).toBe("role");
		expect((await call("PATCH", `/users/${u.id}`, ADMIN_TOKEN, {})).status).toBe(422);
		expect((await call("PATCH", "/users/nope", ADMIN_TOKEN, { role: "member" })).status).toBe(404);
		const users = await ok<any[]>("GET", "/users", ADMIN_TOKEN, undefined, 200);
		const admin = users.find((x) => x.name === "admin");
		expect(admin).toMatchObject({ role: "admin", admin: true });
		expect((await call("PATCH", `/users/${admin.id}`, ADMIN_TOKEN, { role: "member" })).status).toBe(409);
		const other = await newUser({ role: "admin" });
		expect((await call("PATCH", `/users/${other.id}`, other.token, { role: "member" })).status).toBe(409);
		expect(users.find((x) => x.id === ids.operator)).toMatchObject({ role: "operator", viewAll: false });
	});
});

describe("runAs stays admin-only for operators", () => {
	test("an operator may neither name root or an account outside CRONJOB_USER_RUN_AS, nor change or run an admin's job that does", async () => {
		for (const runAs of ["root", "daemon"]) {
			const created = await call("POST", "/jobs", tokens.operator, job({ runAs }));
			expect(created.status).toBe(403);
			expect(created.body.data.field).toBe("runAs");
			const id = (await ok("POST", "/jobs", ADMIN_TOKEN, job({ runAs }), 201)).id as string;
			for (const [method, path, body] of [
				["PATCH", `/jobs/${id}`, { executable: "id" }],
				["PATCH", `/jobs/${id}`, { runAs: "nobody" }],
				["POST", `/jobs/${id}/run`, undefined],
			] as const) {
				const res = await call(method, path, tokens.operator, body);
				expect([method, path, res.status]).toEqual([method, path, 403]);
				expect(res.body.data).toMatchObject({ field: "runAs", requiredRole: "admin", role: "operator" });
			}
			expect((await call("GET", `/jobs/${id}`, tokens.operator)).status).toBe(200);
			expect((await call("PATCH", `/jobs/${id}`, ADMIN_TOKEN, { executable: "id" })).status).toBe(200);
		}
		const nobody = await memberJob({ runAs: "nobody" });
		expect((await call("PATCH", `/jobs/${nobody}`, tokens.operator, { executable: "date" })).status).toBe(200);
	});

	test("an admin demoted to member keeps no power over its root job", async () => {
		const u = await newUser({ role: "admin" });
		const id = (await ok("POST", "/jobs", u.token, job({ runAs: "root" }), 201)).id as string;
		await ok("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { role: "member" }, 200);
		const res = await call("PATCH", `/jobs/${id}`, u.token, { executable: "id" });
		expect(res.status).toBe(403);
		expect(res.body.data).toMatchObject({ field: "runAs", requiredRole: "admin" });
		expect((await call("POST", `/jobs/${id}/run`, u.token)).status).toBe(403);
	});
});

describe("named tokens", () => {
	test("POST /tokens answers the secret once; GET /tokens lists without secrets; names are unique per user", async () => {
		const u = await newUser();
		const made = await ok("POST", "/tokens", u.token, { name: "ci", expiresAt: "2999-01-01T00:00:00Z" }, 201);
		expect(made).toMatchObject({
			id: expect.any(String),
			name: "ci",
			role: null,
			expiresAt: "2999-01-01T00:00:00.000Z",
			lastUsedAt: null,
			token: expect.any(String),
		});
		expect((await call("GET", "/jobs", made.token)).status).toBe(200);
		const list = await ok<any[]>("GET", "/tokens", u.token, undefined, 200);
		expect(list.map((t) => t.name)).toEqual(["default", "ci"]);
		expect(list.find((t) => t.name === "default").current).toBe(true);
		expect(JSON.stringify(list)).not.toContain(made.token);
		expect(JSON.stringify(list)).not.toMatch(/hash|secret|"token"/i);
		const dup = await call("POST", "/tokens", u.token, { name: "ci" });
		expect(dup.status).toBe(409);
		expect(dup.body.data.field).toBe("name");
		for (const [body, field] of [
			[{ name: "" }, "name"],
			[{}, "name"],
			[{ name: "x", expiresAt: "2000-01-01T00:00:00Z" }, "expiresAt"],
			[{ name: "x", expiresAt: "soon" }, "expiresAt"],
			[{ name: "x", role: "god" }, "role"],
			[{ name: "x", surprise: 1 }, null],
		] as const) {
			const res = await call("POST", "/tokens", u.token, body);
			expect([JSON.stringify(body), res.status]).toEqual([JSON.stringify(body), 422]);
			if (field) expect(res.body.data.field).toBe(field);
		}
	});

	test("a narrowed token acts with its role, never wider than its user's, and mints none wider", async () => {
		const viewerToken = await ok("POST", "/tokens", tokens.member, { name: unique("ro"), role: "viewer" }, 201);
		expect(viewerToken.role).toBe("viewer");
		const create = await call("POST", "/jobs", viewerToken.token, job());
		expect(create.status).toBe(403);
		expect(create.body.data).toMatchObject({ requiredRole: "member", role: "viewer" });
		const own = await memberJob();
		expect((await call("GET", `/jobs/${own}`, viewerToken.token)).status).toBe(200);
		const wider = await call("POST", "/tokens", tokens.member, { name: unique("up"), role: "operator" });
		expect(wider.status).toBe(403);
		expect(wider.body.data).toMatchObject({ field: "role", requiredRole: "operator", role: "member" });
		// A narrowed token's own new token is as narrow, unless narrower still.
		const child = await ok("POST", "/tokens", viewerToken.token, { name: unique("child") }, 201);
		expect(child.role).toBe("viewer");
		expect((await call("POST", "/jobs", child.token, job())).status).toBe(403);
		expect((await call("POST", "/tokens", viewerToken.token, { name: unique("x"), role: "member" })).status).toBe(403);
		// ... and cannot revoke the user's wider tokens (its own, and narrower ones, it may).
		const list = await ok<any[]>("GET", "/tokens", viewerToken.token, undefined, 200);
		const full = list.find((t) => t.name === "default");
		const res = await call("DELETE", `/tokens/${full.id}`, viewerToken.token);
		expect(res.status).toBe(403);
		expect(res.body.data.requiredRole).toBe("member");
		expect((await call("DELETE", `/tokens/${child.id}`, viewerToken.token)).status).toBe(200);
		// An admin's operator token manages no users.
		const op = await ok("POST", "/tokens", ADMIN_TOKEN, { name: unique("op"), role: "operator" }, 201);
		expect((await call("GET", "/users", op.token)).body.data).toMatchObject({ requiredRole: "admin", role: "operator" });
		expect((await call("POST", "/jobs", op.token, job({ runAs: "root" }))).status).toBe(403);
		expect((await call("PATCH", `/jobs/${own}`, op.token, { name: "op" })).status).toBe(200);
		// A user's demotion narrows every token of theirs at once.
		const u = await newUser({ role: "operator" });
		const opToken = await ok("POST", "/tokens", u.token, { name: "op", role: "operator" }, 201);
		await ok("PATCH", `/users/${u.id}`, ADMIN_TOKEN, { role: "viewer" }, 200);
		expect((await call("POST", "/jobs", opToken.token, job())).body.data).toMatchObject({ requiredRole: "member", role: "viewer" });
	});

	test("an admin lists and revokes another user's tokens; others get 403 and 404", async () => {
		const u = await newUser();
		const t = await ok("POST", "/tokens", u.token, { name: "laptop" }, 201);
		const listed = await ok<any[]>("GET", `/tokens?user=${u.id}`, ADMIN_TOKEN, undefined, 200);
		expect(listed.map((x) => [x.name, x.user])).toEqual([
			["default", u.id],
			["laptop", u.id],
		]);
		expect((await call("GET", "/tokens?user=nope", ADMIN_TOKEN)).status).toBe(404);
		expect((await call("GET", `/tokens?user=${u.id}`, tokens.operator)).body.data).toMatchObject({ requiredRole: "admin" });
		expect((await call("DELETE", `/tokens/${t.id}`, tokens.operator)).status).toBe(404);
		expect((await call("DELETE", `/tokens/${t.id}`, ADMIN_TOKEN)).status).toBe(200);
		expect((await call("GET", "/jobs", t.token)).status).toBe(401);
		expect((await call("DELETE", `/tokens/${t.id}`, ADMIN_TOKEN)).status).toBe(404);
		// Deleting a user takes its tokens with it.
		await ok("DELETE", `/users/${u.id}`, ADMIN_TOKEN, undefined, 200);
		expect((await call("GET", "/jobs", u.token)).status).toBe(401);
		expect((await call("GET", `/tokens?user=${u.id}`, ADMIN_TOKEN)).status).toBe(404);
	});

	test("last use is written on the first use and then at most once a minute, not on every request", async () => {
		const u = await newUser();
		const t = await ok("POST", "/tokens", u.token, { name: "probe" }, 201);
		const lastUsed = async () => (await ok<any[]>("GET", "/tokens", u.token, undefined, 200)).find((x) => x.id === t.id).lastUsedAt as string | null;
		expect(await lastUsed()).toBeNull();
		const before = Date.now();
		await ok("GET", "/jobs", t.token, undefined, 200);
		const first = await lastUsed();
		expect(first).not.toBeNull();
		expect(Date.parse(first!)).toBeGreaterThanOrEqual(before - 5);
		for (let i = 0; i < 3; i++) await ok("GET", "/jobs", t.token, undefined, 200);
		expect(await lastUsed()).toBe(first);
	});

	test("a revoked token is refused at once by another API node on the same database", async () => {
		// A second API node (api + jobs + users) on the same data folder: the same SQLite database.
		const second = await startNode({ CRONJOB_DATA_DIR: node.dataDir, SERVICES: "api,jobs" });
		try {
			const u = await newUser();
			const t = await ok("POST", "/tokens", u.token, { name: "both" }, 201);
			expect((await second.request("GET", "/jobs", { token: t.token })).status).toBe(200);
			await ok("DELETE", `/tokens/${t.id}`, u.token, undefined, 200);
			const res = await second.request("GET", "/jobs", { token: t.token });
			expect(res.status).toBe(401);
			expect((await second.request("GET", "/jobs", { token: u.token })).status).toBe(200);
		} finally {
			await second.stop();
		}
	});
});
