/**
 * The audit log of job changes (a real node, the embedded default): a scripted session of creates,
 * patches, suspends, resumes, a manual run and a delete, each recorded once with who, from where,
 * what (secrets masked) and the outcome; refused requests recorded with their outcome; GET /audit
 * for admins only, with filters and paging; an audit row and its change written together.
 */
import { SECRET_MASK } from "../../lib/core/job-schema";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

interface Rec {
	at: string;
	action: string;
	target: string | null;
	userName: string | null;
	address: string | null;
	change: Record<string, unknown> | null;
	outcome: string;
}

describe("audit log", () => {
	let node: TestNode;
	beforeAll(async () => {
		node = await startNode({});
	});
	afterAll(() => node?.stop());

	const audit = async (query = "") => (await node.request("GET", `/audit${query}`)).body as Rec[];

	test("every job change of a session is recorded once, in order, secrets masked; refused ones with their outcome", async () => {
		const t0 = new Date().toISOString();
		const created = await node.request("POST", "/jobs", {
			body: { type: "command", executable: "true", schedule: "0 0 1 1 *", secretEnv: { TOKEN: "do-not-log-me" } },
		});
		expect(created.status).toBe(201);
		const id = created.body.id as string;
		expect((await node.request("PATCH", `/jobs/${id}`, { body: { schedule: "0 1 1 1 *" } })).status).toBe(200);
		expect((await node.request("PATCH", `/jobs/${id}`, { body: { suspended: true } })).status).toBe(200);
		expect((await node.request("PATCH", `/jobs/${id}`, { body: { suspended: false } })).status).toBe(200);
		expect((await node.request("PATCH", `/jobs/${id}`, { body: { timeout: -1 } })).status).toBe(422);
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`)).body?.worker !== null, 10_000, "the job assigned");
		expect((await node.request("POST", `/jobs/${id}/run`)).status).toBe(202);
		expect((await node.request("DELETE", `/jobs/${id}`)).status).toBe(200);
		expect((await node.request("DELETE", "/jobs/no-such-job")).status).toBe(404);

		const mine = (await audit(`?job=${id}&from=${encodeURIComponent(t0)}`)).reverse();
		expect(mine.map((r) => [r.action, r.outcome])).toEqual([
			["job.create", "ok"],
			["job.update", "ok"],
			["job.suspend", "ok"],
			["job.resume", "ok"],
			["job.update", "422 VALIDATION_ERROR timeout"],
			["job.run", "ok"],
			["job.delete", "ok"],
		]);
		for (const r of mine) expect(r).toMatchObject({ userName: "admin", tokenName: "default", address: expect.stringMatching(/127\.0\.0\.1/) as unknown });
		expect(mine[0].change).toMatchObject({ schedule: "0 0 1 1 *", secretEnv: { TOKEN: SECRET_MASK } });
		expect(mine[1].change).toEqual({ schedule: "0 1 1 1 *" });
		expect(JSON.stringify(await audit())).not.toContain("do-not-log-me");
		expect((await audit("?job=no-such-job")).map((r) => [r.action, r.outcome])).toEqual([["job.delete", "404 NOT_FOUND id"]]);
	});

	test("filters and paging; admins only; bad filters are a 4xx naming the field", async () => {
		const all = await audit("?limit=1000");
		expect(all.length).toBeGreaterThanOrEqual(8);
		const page = await audit("?limit=2&offset=1");
		expect(page.map((r) => r.at)).toEqual(all.slice(1, 3).map((r) => r.at));
		expect((await audit("?action=job.suspend")).every((r) => r.action === "job.suspend")).toBe(true);
		expect(await audit(`?to=${encodeURIComponent("2000-01-01T00:00:00Z")}`)).toEqual([]);
		const bad = await node.request("GET", "/audit?from=yesterday");
		expect(bad.status).toBe(422);
		expect(bad.body.data.field).toBe("from");
		const admin = { user: { id: "admin", name: "admin", admin: true } };
		const { token } = await node.broker.call<{ token: string }, { name: string }>("users.createUser", { name: "plain" }, { meta: admin });
		expect((await node.request("GET", "/audit", { token })).status).toBe(403);
	});

	test("the change and its record in one transaction: when the record cannot be written, the change does not happen", async () => {
		const jobs = node.broker.getLocalService("jobs") as unknown as { adapter: { db: { query(sql: string): Promise<unknown> } } };
		const before = ((await node.request("GET", "/jobs?limit=1000")).body as unknown[]).length;
		await jobs.adapter.db.query("ALTER TABLE job_audit RENAME TO job_audit_away");
		try {
			const res = await node.request("POST", "/jobs", { body: { type: "command", executable: "true", schedule: "0 0 1 1 *" } });
			expect(res.status).toBeGreaterThanOrEqual(500);
			expect(((await node.request("GET", "/jobs?limit=1000")).body as unknown[]).length).toBe(before);
		} finally {
			await jobs.adapter.db.query("ALTER TABLE job_audit_away RENAME TO job_audit");
		}
		expect((await node.request("POST", "/jobs", { body: { type: "command", executable: "true", schedule: "0 0 1 1 *" } })).status).toBe(201);
		expect(((await node.request("GET", "/jobs?limit=1000")).body as unknown[]).length).toBe(before + 1);
	});

	test("user, token and role changes, refused ones and failed authentications, merged with the job changes", async () => {
		const t0 = new Date().toISOString();
		const created = await node.request("POST", "/users", { body: { name: "carol", role: "member" } });
		expect(created.status).toBe(201);
		const carol = created.body as { id: string; token: string };
		expect((await node.request("POST", "/users", { body: { name: "carol" } })).status).toBe(409);
		expect((await node.request("PATCH", `/users/${carol.id}`, { body: { role: "operator" } })).status).toBe(200);
		const tok = await node.request("POST", "/tokens", { token: carol.token, body: { name: "ci", role: "viewer" } });
		expect(tok.status).toBe(201);
		expect((await node.request("GET", "/jobs", { token: "not-a-token" })).status).toBe(401);
		expect((await node.request("DELETE", `/tokens/${tok.body.id as string}`, { token: carol.token })).status).toBe(200);
		expect((await node.request("DELETE", `/users/${carol.id}`)).status).toBe(200);
		await waitFor(async () => (await audit(`?action=auth.failed&from=${encodeURIComponent(t0)}`)).length === 1, 5000, "the failed authentication recorded");

		const session = (await audit(`?from=${encodeURIComponent(t0)}`)).reverse();
		expect(session.map((r) => [r.action, r.outcome])).toEqual([
			["user.create", "ok"],
			["user.create", "409 CONFLICT name"],
			["user.update", "ok"],
			["token.create", "ok"],
			["auth.failed", "Invalid bearer token"],
			["token.revoke", "ok"],
			["user.delete", "ok"],
		]);
		expect(session[2].change).toEqual({ role: { from: "member", to: "operator" }, viewAll: false });
		expect(session[3]).toMatchObject({ userName: "carol", tokenName: "default", change: { name: "ci", role: "viewer" } });
		expect(session[4]).toMatchObject({ userId: null, address: expect.stringMatching(/127\.0\.0\.1/) as unknown });
		// No secret in any record: the new user's token and the new token's secret were answered once, never kept.
		const text = JSON.stringify(await audit("?limit=1000"));
		expect(text).not.toContain(carol.token);
		expect(text).not.toContain(tok.body.token as string);
		// The users' records and the jobs' records in one list, newest first.
		const all = await audit("?limit=1000");
		expect(all.map((r) => r.at)).toEqual([...all.map((r) => r.at)].sort().reverse());
		expect(new Set(all.map((r) => r.action.split(".")[0]))).toEqual(new Set(["job", "user", "token", "auth"]));
	});

	test("a rate-limited address is recorded once a minute, not once a request", async () => {
		const limited = await startNode({ CRONJOB_AUTH_FAIL_LIMIT: "0.01:2", CRONJOB_TRUST_PROXY: "1" });
		try {
			const from = { "x-forwarded-for": "10.9.9.9" };
			for (let i = 0; i < 6; i++) await limited.request("GET", "/jobs", { token: `bad-${i}`, headers: from });
			await waitFor(
				async () => ((await limited.request("GET", "/audit?action=auth.rate_limited")).body as Rec[]).length === 1,
				5000,
				"the rate limit recorded",
			);
			const recs = (await limited.request("GET", "/audit?limit=100")).body as Rec[];
			expect(recs.filter((r) => r.action === "auth.failed").length).toBe(2);
			expect(recs.filter((r) => r.action === "auth.rate_limited")).toEqual([expect.objectContaining({ address: "10.9.9.9", outcome: "429 authentication" })]);
		} finally {
			await limited.stop();
		}
	});

	test("retention: records older than CRONJOB_AUDIT_RETENTION_DAYS go at the next change, in both tables", async () => {
		const n = await startNode({ CRONJOB_AUDIT_RETENTION_DAYS: "1" });
		try {
			type Svc = { audit: { insert(rec: Record<string, unknown>): Promise<void> } };
			const old = (id: string, action: string) => ({
				id,
				at: Date.now() - 2 * 86_400_000,
				userId: null,
				userName: null,
				tokenName: null,
				address: null,
				action,
				target: null,
				change: null,
				outcome: "ok",
			});
			await (n.broker.getLocalService("jobs") as unknown as Svc).audit.insert(old("old-job-record", "job.update"));
			await (n.broker.getLocalService("users") as unknown as Svc).audit.insert(old("old-user-record", "user.update"));
			const ids = async () => ((await n.request("GET", "/audit?limit=1000")).body as { id: string }[]).map((r) => r.id);
			expect(await ids()).toEqual(expect.arrayContaining(["old-job-record", "old-user-record"]));
			expect((await n.request("POST", "/jobs", { body: { type: "command", executable: "true", schedule: "0 0 1 1 *" } })).status).toBe(201);
			expect((await n.request("POST", "/users", { body: { name: "dave" } })).status).toBe(201);
			// The prune runs behind the change, not awaited by it.
			await waitFor(async () => !(await ids()).some((id) => id.startsWith("old-")), 5000, "the old records pruned");
			expect((await ids()).length).toBe(2);
		} finally {
			await n.stop();
		}
	});
});
