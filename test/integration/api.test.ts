/**
 * The REST API end to end on the single-node default: real broker, real HTTP, SQLite, in-process
 * coordination, real processes. Every route, every status and error code, auth and ownership.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { startNode, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

let node: TestNode;
let alice: { id: string; token: string };
let bob: { id: string; token: string };

beforeAll(async () => {
	node = await startNode();
	const a = await node.request("POST", "/users", { body: { name: "alice" } });
	expect(a.status).toBe(201);
	alice = { id: a.body.id, token: a.body.token };
	const b = await node.request("POST", "/users", { body: { name: "bob" } });
	bob = { id: b.body.id, token: b.body.token };
});

afterAll(async () => {
	await node?.stop();
});

const job = (over: Record<string, unknown> = {}) => ({ executable: "echo hello", schedule: "0 0 1 1 *", type: "command", ...over });

async function runsOf(id: string, token?: string) {
	const res = await node.request("GET", `/jobs/${id}/runs`, { token });
	expect(res.status).toBe(200);
	return res.body as any[];
}

describe("health and authentication", () => {
	it("GET /health answers without a token, with each backend", async () => {
		const res = await node.request("GET", "/health", { token: null });
		expect(res.status).toBe(200);
		expect(res.body.status).toBe("ok");
		expect(res.body.backends.database.ok).toBe(true);
		expect(res.body.backends.coordination.ok).toBe(true);
		expect(res.body.backends.objectStore.ok).toBe(true);
	});

	it.each([
		["GET", "/jobs"],
		["POST", "/jobs"],
		["GET", "/jobs/x"],
		["PATCH", "/jobs/x"],
		["DELETE", "/jobs/x"],
		["POST", "/jobs/x/run"],
		["GET", "/jobs/x/runs"],
		["GET", "/jobs/x/executable"],
		["GET", "/schedule/preview?schedule=*%20*%20*%20*%20*"],
		["GET", "/workers"],
		["POST", "/users"],
		["GET", "/users"],
		["DELETE", "/users/x"],
	])("%s %s needs a bearer token (401)", async (method, path) => {
		const none = await node.request(method, path, { token: null, body: method === "GET" || method === "DELETE" ? undefined : {} });
		expect(none.status).toBe(401);
		expect(none.body).toMatchObject({ name: expect.any(String), code: 401, data: { field: "authorization" } });
		const bad = await node.request(method, path, { token: "nope", body: method === "GET" || method === "DELETE" ? undefined : {} });
		expect(bad.status).toBe(401);
	});

	it("unknown routes are 404", async () => {
		expect((await node.request("GET", "/nope")).status).toBe(404);
	});
});

describe("POST /jobs validation", () => {
	it("creates a job: 201 with the seed shape", async () => {
		const res = await node.request("POST", "/jobs", { body: job({ name: "n1", timezone: "Europe/London", env: { A: "1" } }), token: alice.token });
		expect(res.status).toBe(201);
		expect(res.headers.get("location")).toBe(`/jobs/${res.body.id}`);
		expect(res.body).toMatchObject({
			id: expect.any(String),
			status: "scheduled",
			executable: "echo hello",
			schedule: "0 0 1 1 *",
			type: "command",
			name: "n1",
			timezone: "Europe/London",
			recurring: true,
			concurrency: "allow",
			retries: 0,
			misfire: "run_once",
			startingDeadline: null,
			env: { A: "1" },
			owner: alice.id,
			suspended: false,
		});
		expect(new Date(res.body.nextRunAt).getTime()).toBeGreaterThan(Date.now());
		expect(res.body.createdAt).toMatch(/Z$/);
	});

	it.each([
		[{ schedule: undefined }, "schedule"],
		[{ schedule: "5 4" }, "schedule"],
		[{ schedule: "* * * * * * *" }, "schedule"],
		[{ schedule: "61 * * * *" }, "schedule"],
		[{ schedule: "garbage" }, "schedule"],
		[{ schedule: 5 }, "schedule"],
		[{ executable: "" }, "executable"],
		[{ executable: undefined }, "executable"],
		[{ type: "shell" }, "type"],
		[{ timezone: "Mars/Olympus" }, "timezone"],
		[{ timeout: -1 }, "timeout"],
		[{ retries: 11 }, "retries"],
		[{ concurrency: "sometimes" }, "concurrency"],
		[{ misfire: "later" }, "misfire"],
		[{ startingDeadline: 0 }, "startingDeadline"],
		[{ startingDeadline: "soon" }, "startingDeadline"],
		[{ env: { "BAD-NAME": "x" } }, "env"],
		[{ runAs: "root;rm -rf /" }, "runAs"],
		[{ surprise: 1 }, "surprise"],
	])("refuses %j with 422 naming %s and writes nothing", async (over, field) => {
		const before = (await node.request("GET", "/jobs?limit=1000")).body.length;
		const res = await node.request("POST", "/jobs", { body: job(over), token: alice.token });
		expect(res.status).toBe(422);
		expect(res.body).toMatchObject({ name: expect.any(String), message: expect.any(String), code: 422, type: expect.any(String) });
		expect(res.body.data.field).toBe(field);
		expect((await node.request("GET", "/jobs?limit=1000")).body.length).toBe(before);
	});

	it("takes a startingDeadline and answers it; PATCH changes and clears it", async () => {
		const res = await node.request("POST", "/jobs", { body: job({ startingDeadline: 30 }), token: alice.token });
		expect(res.status).toBe(201);
		expect(res.body.startingDeadline).toBe(30);
		const patched = await node.request("PATCH", `/jobs/${res.body.id}`, { body: { startingDeadline: 5 }, token: alice.token });
		expect(patched.body.startingDeadline).toBe(5);
		const cleared = await node.request("PATCH", `/jobs/${res.body.id}`, { body: { startingDeadline: null }, token: alice.token });
		expect(cleared.body.startingDeadline).toBeNull();
		expect((await node.request("GET", `/jobs/${res.body.id}`, { token: alice.token })).body.startingDeadline).toBeNull();
	});

	it("refuses invalid JSON with 400", async () => {
		const res = await node.request("POST", "/jobs", { raw: "{not json", token: alice.token });
		expect(res.status).toBe(400);
		expect(res.body.data.field).toBe("body");
	});

	it("only admins may run jobs as root (403)", async () => {
		const res = await node.request("POST", "/jobs", { body: job({ runAs: "root" }), token: alice.token });
		expect(res.status).toBe(403);
		expect(res.body.data.field).toBe("runAs");
		const admin = await node.request("POST", "/jobs", { body: job({ runAs: "root" }) });
		expect(admin.status).toBe(201);
		expect(admin.body.runAs).toBe("root");
		// Other system accounts are admin-only too; non-admins may name CRONJOB_USER_RUN_AS (nobody).
		const daemon = await node.request("POST", "/jobs", { body: job({ runAs: "daemon" }), token: alice.token });
		expect(daemon.status).toBe(403);
		expect(daemon.body.data.field).toBe("runAs");
		expect((await node.request("POST", "/jobs", { body: job({ runAs: "nobody" }), token: alice.token })).status).toBe(201);
		expect((await node.request("POST", "/jobs", { body: job({ runAs: "daemon" }) })).status).toBe(201);
	});
});

describe("reading, changing and deleting jobs", () => {
	let id: string;
	beforeAll(async () => {
		id = (await node.request("POST", "/jobs", { body: job(), token: alice.token })).body.id;
	});

	it("GET /jobs lists only the caller's jobs; admins see all; filters and limits", async () => {
		const mine = await node.request("GET", "/jobs", { token: alice.token });
		expect(mine.status).toBe(200);
		expect(Array.isArray(mine.body)).toBe(true);
		expect(mine.body.every((j: any) => j.owner === alice.id)).toBe(true);
		expect((await node.request("GET", "/jobs", { token: bob.token })).body).toEqual([]);
		const all = await node.request("GET", "/jobs?limit=1000");
		expect(all.body.some((j: any) => j.owner === alice.id)).toBe(true);
		expect((await node.request("GET", "/jobs?limit=1", { token: alice.token })).body).toHaveLength(1);
		expect((await node.request("GET", "/jobs?status=finished", { token: alice.token })).body).toEqual([]);
		const bad = await node.request("GET", "/jobs?limit=5000");
		expect(bad.status).toBe(422);
		expect(bad.body.data.field).toBe("limit");
		expect((await node.request("GET", "/jobs?status=weird")).body.data.field).toBe("status");
	});

	it("GET /jobs/{id}: the job, 404 for others' and unknown ids", async () => {
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.id).toBe(id);
		expect((await node.request("GET", `/jobs/${id}`)).status).toBe(200); // admin
		const other = await node.request("GET", `/jobs/${id}`, { token: bob.token });
		expect(other.status).toBe(404);
		expect(other.body.data.field).toBe("id");
		expect((await node.request("GET", "/jobs/does-not-exist", { token: alice.token })).status).toBe(404);
		expect((await node.request("PATCH", `/jobs/${id}`, { token: bob.token, body: { name: "x" } })).status).toBe(404);
		expect((await node.request("DELETE", `/jobs/${id}`, { token: bob.token })).status).toBe(404);
		expect((await node.request("POST", `/jobs/${id}/run`, { token: bob.token })).status).toBe(404);
		expect((await node.request("GET", `/jobs/${id}/runs`, { token: bob.token })).status).toBe(404);
	});

	it("PATCH /jobs/{id} changes fields and validates them", async () => {
		const res = await node.request("PATCH", `/jobs/${id}`, {
			token: alice.token,
			body: { schedule: "*/5 * * * *", timezone: "America/New_York", timeout: 30, suspended: true },
		});
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ schedule: "*/5 * * * *", timezone: "America/New_York", timeout: 30, suspended: true, nextRunAt: null });
		const back = await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { suspended: false } });
		expect(back.body.nextRunAt).not.toBeNull();
		const bad = await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { schedule: "1 2 3" } });
		expect(bad.status).toBe(422);
		expect(bad.body.data.field).toBe("schedule");
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.schedule).toBe("*/5 * * * *");
		expect((await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { runAs: "root" } })).status).toBe(403);
	});

	it("DELETE /jobs/{id} answers the job finished; it stays readable; changes are refused", async () => {
		const res = await node.request("DELETE", `/jobs/${id}`, { token: alice.token });
		expect(res.status).toBe(200);
		expect(res.body.status).toBe("finished");
		expect(res.body.nextRunAt).toBeNull();
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status).toBe("finished");
		expect((await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { name: "x" } })).status).toBe(409);
		expect((await node.request("POST", `/jobs/${id}/run`, { token: alice.token })).status).toBe(409);
	});
});

describe("execution", () => {
	it("POST /jobs/{id}/run runs the command now as an unprivileged user, with the job's env", async () => {
		const created = await node.request("POST", "/jobs", {
			token: alice.token,
			body: job({ executable: 'echo "$GREETING $CRONJOB_JOB_ID $CRONJOB_ATTEMPT"; id -un; echo err >&2', env: { GREETING: "hi" } }),
		});
		const id = created.body.id;
		const res = await node.request("POST", `/jobs/${id}/run`, { token: alice.token });
		expect(res.status).toBe(202);
		expect(res.body).toMatchObject({ jobId: id, status: "running", trigger: "manual", attempt: 1 });
		const runs = await waitFor(
			async () => {
				const r = await runsOf(id, alice.token);
				return r.length === 1 && r[0].status !== "running" ? r : null;
			},
			10_000,
			"manual run",
		);
		expect(runs[0]).toMatchObject({ status: "succeeded", exitCode: 0, trigger: "manual", node: node.config.nodeId });
		const expectedUser = process.getuid?.() === 0 ? "nobody" : os.userInfo().username;
		expect(runs[0].output).toBe(`hi ${id} 1\n${expectedUser}\nerr\n`);
		expect(new Date(runs[0].startedAt).getTime()).toBeGreaterThanOrEqual(new Date(runs[0].scheduledAt).getTime());
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.lastRun).toMatchObject({ status: "succeeded", exitCode: 0 });
	});

	it("fires on schedule at the exact second; error after a failure, scheduled after a success", async () => {
		const flag = `${node.dataDir}/fail-flag`;
		fs.writeFileSync(flag, "");
		fs.chmodSync(node.dataDir, 0o777);
		const created = await node.request("POST", "/jobs", { token: alice.token, body: job({ executable: `test ! -e ${flag}`, schedule: "* * * * * *" }) });
		const id = created.body.id;
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status === "error", 10_000, "status error");
		const failed = (await runsOf(id, alice.token)).find((r) => r.status === "failed");
		expect(failed.exitCode).toBe(1);
		expect(new Date(failed.scheduledAt).getUTCMilliseconds()).toBe(0);
		fs.unlinkSync(flag);
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status === "scheduled", 10_000, "status scheduled");
		const runs = await runsOf(id, alice.token);
		const scheduledAts = runs.map((r) => r.scheduledAt);
		expect(new Set(scheduledAts).size).toBe(scheduledAts.length); // each fire once
		// The newest finished run (a prefired one may be waiting for its instant, startedAt null).
		const done = runs.find((r) => r.status === "succeeded");
		const lag = new Date(done.startedAt).getTime() - new Date(done.scheduledAt).getTime();
		expect(lag).toBeGreaterThanOrEqual(0);
		await node.request("DELETE", `/jobs/${id}`, { token: alice.token });
	});

	it("a one-shot job runs once, then is finished", async () => {
		const created = await node.request("POST", "/jobs", {
			token: alice.token,
			body: job({ schedule: "* * * * * *", recurring: false, executable: "echo once" }),
		});
		const id = created.body.id;
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status === "finished", 10_000, "one-shot finished");
		const runs = await runsOf(id, alice.token);
		expect(runs).toHaveLength(1);
		expect(runs[0]).toMatchObject({ status: "succeeded", output: "once\n" });
		// A fire due between the creation and the worker taking the job runs late, as a catch-up.
		expect(["schedule", "catchup"]).toContain(runs[0].trigger);
	});

	it("a timeout kills the run: timed_out, status error", async () => {
		const created = await node.request("POST", "/jobs", { token: alice.token, body: job({ executable: "sleep 30", timeout: 1 }) });
		const id = created.body.id;
		await node.request("POST", `/jobs/${id}/run`, { token: alice.token });
		const runs = await waitFor(
			async () => {
				const r = await runsOf(id, alice.token);
				return r[0]?.status === "timed_out" ? r : null;
			},
			15_000,
			"timed out run",
		);
		expect(runs[0].signal).toBe("SIGTERM");
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status).toBe("error");
	});

	it("retries a failed run with backoff, raising attempt", async () => {
		const created = await node.request("POST", "/jobs", { token: alice.token, body: job({ executable: 'test "$CRONJOB_ATTEMPT" = 2', retries: 2 }) });
		const id = created.body.id;
		await node.request("POST", `/jobs/${id}/run`, { token: alice.token });
		const runs = await waitFor(
			async () => {
				const r = await runsOf(id, alice.token);
				return r.length === 2 && r.every((x) => x.status !== "running") ? r : null;
			},
			15_000,
			"retry",
		);
		expect(runs.map((r) => [r.attempt, r.status, r.trigger])).toEqual([
			[2, "succeeded", "retry"],
			[1, "failed", "manual"],
		]);
		expect(runs[0].scheduledAt).toBe(runs[1].scheduledAt);
		expect((await node.request("GET", `/jobs/${id}`, { token: alice.token })).body.status).toBe("scheduled");
	});

	it("a change reaches the worker within a second: suspend stops the fires, resume restarts them", async () => {
		const created = await node.request("POST", "/jobs", { token: alice.token, body: job({ executable: "true", schedule: "* * * * * *" }) });
		const id = created.body.id;
		await waitFor(async () => (await runsOf(id, alice.token)).length >= 1, 10_000, "first fire");
		const suspendedAt = Date.now();
		expect((await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { suspended: true } })).status).toBe(200);
		// Let two more fire times pass: none after the first second following the change may run.
		await waitFor(() => Date.now() > suspendedAt + 2500, 5000, "two fire times");
		const late = (await runsOf(id, alice.token)).filter((r) => Date.parse(r.scheduledAt) > suspendedAt + 1000);
		expect(late).toEqual([]);
		const resumedAt = Date.now();
		await node.request("PATCH", `/jobs/${id}`, { token: alice.token, body: { suspended: false } });
		const runs = await waitFor(
			async () => {
				const r = (await runsOf(id, alice.token)).filter((x) => Date.parse(x.scheduledAt) > resumedAt);
				return r.length > 0 ? r : null;
			},
			5000,
			"a fire after resuming",
		);
		expect(Date.parse(runs[runs.length - 1].scheduledAt) - resumedAt).toBeLessThanOrEqual(1000);
		await node.request("DELETE", `/jobs/${id}`, { token: alice.token });
	});

	it("concurrency forbid records a skipped run while the previous one runs", async () => {
		const created = await node.request("POST", "/jobs", {
			token: alice.token,
			body: job({ executable: "sleep 3", schedule: "* * * * * *", concurrency: "forbid" }),
		});
		const id = created.body.id;
		const runs = await waitFor(
			async () => {
				const r = await runsOf(id, alice.token);
				return r.some((x) => x.status === "skipped") ? r : null;
			},
			10_000,
			"skipped run",
		);
		expect(runs.filter((r) => r.status === "running").length).toBeLessThanOrEqual(1);
		await node.request("DELETE", `/jobs/${id}`, { token: alice.token });
	});
});

describe("other routes", () => {
	it("GET /schedule/preview lists the next fire times", async () => {
		const res = await node.request(
			"GET",
			`/schedule/preview?schedule=${encodeURIComponent("30 2 * * *")}&timezone=America/New_York&from=2025-03-08T12:00:00Z&count=3`,
		);
		expect(res.status).toBe(200);
		expect(res.body).toEqual({
			schedule: "30 2 * * *",
			timezone: "America/New_York",
			next: ["2025-03-09T07:00:00.000Z", "2025-03-10T06:30:00.000Z", "2025-03-11T06:30:00.000Z"],
		});
		expect((await node.request("GET", "/schedule/preview?schedule=5%204")).body.data.field).toBe("schedule");
		expect((await node.request("GET", "/schedule/preview?schedule=*%20*%20*%20*%20*&count=101")).body.data.field).toBe("count");
		expect((await node.request("GET", "/schedule/preview?schedule=*%20*%20*%20*%20*&from=yesterday")).body.data.field).toBe("from");
		expect((await node.request("GET", "/schedule/preview?schedule=*%20*%20*%20*%20*&timezone=Nowhere")).body.data.field).toBe("timezone");
	});

	it("GET /schedule/preview answers the time zone normalized, as a job stores it", async () => {
		const created = await node.request("POST", "/jobs", { token: alice.token, body: job({ timezone: "utc" }) });
		expect(created.status).toBe(201);
		expect(created.body.timezone).toBe("UTC");
		for (const [given, stored] of [
			["utc", "UTC"],
			["europe/berlin", "Europe/Berlin"],
		]) {
			const res = await node.request("GET", `/schedule/preview?schedule=${encodeURIComponent("0 0 1 1 *")}&timezone=${encodeURIComponent(given)}&count=1`);
			expect(res.status).toBe(200);
			expect(res.body.timezone).toBe(stored);
		}
		await node.request("DELETE", `/jobs/${created.body.id}`, { token: alice.token });
	});

	it("GET /workers lists the live worker with its job count", async () => {
		const res = await node.request("GET", "/workers", { token: alice.token });
		expect(res.status).toBe(200);
		expect(res.body).toHaveLength(1);
		expect(res.body[0]).toMatchObject({ id: node.config.nodeId, pid: process.pid, jobs: expect.any(Number), clockOffsetMs: expect.any(Number), clockOk: true });
	});

	it("users: admins create, list and delete; tokens work once created; non-admins get 403", async () => {
		expect((await node.request("POST", "/users", { token: alice.token, body: { name: "eve" } })).status).toBe(403);
		expect((await node.request("GET", "/users", { token: alice.token })).status).toBe(403);
		const dup = await node.request("POST", "/users", { body: { name: "alice" } });
		expect(dup.status).toBe(409);
		expect(dup.body.data.field).toBe("name");
		const bad = await node.request("POST", "/users", { body: { name: "" } });
		expect(bad.status).toBe(422);
		expect(bad.body.data.field).toBe("name");
		const carol = await node.request("POST", "/users", { body: { name: "carol", admin: true } });
		expect(carol.status).toBe(201);
		expect(carol.body.token).toEqual(expect.any(String));
		const list = await node.request("GET", "/users", { token: carol.body.token });
		expect(list.status).toBe(200);
		expect(list.body.map((u: any) => u.name)).toEqual(expect.arrayContaining(["admin", "alice", "bob", "carol"]));
		expect(JSON.stringify(list.body)).not.toContain("token");
		expect((await node.request("DELETE", `/users/${carol.body.id}`)).status).toBe(200);
		expect((await node.request("GET", "/jobs", { token: carol.body.token })).status).toBe(401);
		expect((await node.request("DELETE", "/users/nope")).status).toBe(404);
	});
});

describe("jobs.inflight (runs still running, to find runs cut off by a dead worker)", () => {
	it("finds the running run of a job among a small and a large set of job ids alike", async () => {
		const created = await node.request("POST", "/jobs", { body: { type: "command", schedule: "0 0 1 1 *", executable: "sleep 3" } });
		expect(created.status).toBe(201);
		const id = created.body.id as string;
		const run = await node.request("POST", `/jobs/${id}/run`);
		expect(run.status).toBe(202);
		await waitFor(async () => ((await node.request("GET", `/jobs/${id}/runs`)).body as any[]).some((r) => r.status === "running"), 10_000, "the run running");
		const others = Array.from({ length: 1500 }, (_, i) => `no-such-job-${i}`);
		for (const jobIds of [
			[id, others[0]],
			[...others.slice(0, 700), id, ...others.slice(700)],
		]) {
			const found = await node.broker.call<{ id: string; jobId: string }[], { jobIds: string[] }>("jobs.inflight", { jobIds });
			expect(found.map((r) => [r.id, r.jobId])).toEqual([[run.body.id, id]]);
		}
		expect(await node.broker.call("jobs.inflight", { jobIds: others })).toEqual([]);
		await node.request("DELETE", `/jobs/${id}`);
	});
});
