/**
 * The product on MySQL/MariaDB (DATABASE_URL) instead of the embedded SQLite:
 * a. the same models: jobs fire, runs are listed, a 64 KiB output tail fits (MEDIUMTEXT), the
 *    unique key (jobId, scheduledAt, attempt) exists and holds;
 * a'. a job is refused (422) what its columns cannot hold, where SQLite takes anything: a command of
 *    65536 bytes, env over 64 KiB as JSON, a schedule longer than 200 characters (each was a 500);
 * b. the schema is created once and without error when several nodes start at the same moment on
 *    an empty database, and a later start on the existing schema is fine;
 * c. a database crash and restart (a private MariaDB on its own port, SIGKILLed and started again on
 *    the same data): 503 JSON while it is down, the worker keeps the results it could not write and
 *    the fires it could not start, and after the restart writes the results, catches the fires up by
 *    the misfire policy and keeps firing; nothing is left running, no fire is lost.
 *
 * Skipped only when DATABASE_URL is unset (CI sets it: scripts/services.sh env). Every database made
 * here is a fresh `cronjob_test_<random>` and is dropped afterwards.
 */
import * as fs from "node:fs";
import type { ServiceBroker } from "moleculer";
import mysql from "mysql2/promise";
import { loadConfig } from "../../lib/config";
import { createNode } from "../../app/node";
import { startPrivateMariaDb, type PrivateMariaDb } from "../support/mariadb";
import { ADMIN_TOKEN, startNode, tempDir, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const DATABASE_URL = process.env.DATABASE_URL?.trim() || null;
const describeDb = DATABASE_URL ? describe : describe.skip;
if (!DATABASE_URL) {
	console.warn('test/integration/mysql.test.ts: DATABASE_URL is unset; skipping the MySQL/MariaDB tests (eval "$(scripts/services.sh env)" sets it)');
}

const FINAL = ["succeeded", "failed", "timed_out", "skipped", "missed"];
const suffix = () => `${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;

/** Reject when `p` takes longer than `ms` (a start that hangs must fail the test, not the suite). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	try {
		return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms)))]);
	} finally {
		clearTimeout(timer);
	}
}

describeDb(`MySQL/MariaDB (DATABASE_URL${DATABASE_URL ? "" : " is unset: skipped"})`, () => {
	const databases: string[] = [];
	const nodes: TestNode[] = [];
	const brokers: ServiceBroker[] = [];
	const dirs: string[] = [];
	let admin: mysql.Connection;

	const server = () => new URL(DATABASE_URL as string);

	beforeAll(async () => {
		const u = server();
		admin = await mysql.createConnection({
			host: u.hostname,
			port: Number(u.port || 3306),
			user: decodeURIComponent(u.username),
			password: decodeURIComponent(u.password),
			multipleStatements: false,
		});
	});

	afterAll(async () => {
		await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
		await Promise.all(brokers.map((b) => b.stop().catch(() => undefined)));
		for (const db of databases) await admin?.query(`DROP DATABASE IF EXISTS \`${db}\``).catch(() => undefined);
		await admin?.end().catch(() => undefined);
		for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
	});

	/** A fresh, empty database the cronjob user owns (it has privileges on cronjob_test%). */
	async function freshDatabase(tag: string): Promise<{ name: string; url: string }> {
		const name = `cronjob_test_${tag}_${suffix()}`;
		await admin.query(`CREATE DATABASE \`${name}\``);
		databases.push(name);
		const u = server();
		u.pathname = `/${name}`;
		return { name, url: u.toString() };
	}

	async function node(env: Record<string, string>): Promise<TestNode> {
		const dataDir = tempDir();
		dirs.push(dataDir);
		const n = await startNode({ ...env, CRONJOB_DATA_DIR: dataDir });
		nodes.push(n);
		return n;
	}

	it("keeps jobs and runs: runs are listed, a ~100 KB output keeps its last 64 KiB (MEDIUMTEXT), the fire key is unique", async () => {
		const db = await freshDatabase("models");
		const n = await node({ DATABASE_URL: db.url });

		const ticker = await n.request("POST", "/jobs", { body: { type: "command", schedule: "* * * * * *", executable: 'echo "tick $CRONJOB_SCHEDULED_AT"' } });
		expect(ticker.status).toBe(201);
		const runs = await waitFor(
			async () => {
				const res = await n.request("GET", `/jobs/${ticker.body.id}/runs`);
				const done = (res.body as any[]).filter((r) => r.status === "succeeded");
				return res.status === 200 && done.length >= 2 ? done : null;
			},
			15_000,
			"two runs of the per-second job",
		);
		for (const r of runs) {
			expect(r).toMatchObject({ jobId: ticker.body.id, attempt: 1, exitCode: 0, node: n.config.nodeId });
			// The first fire may fall between the creation and the worker taking the job: a catch-up.
			expect(["schedule", "catchup"]).toContain(r.trigger);
			expect(r.output).toBe(`tick ${r.scheduledAt}\n`);
		}
		expect(Date.parse(runs[0].scheduledAt)).toBeGreaterThan(Date.parse(runs[1].scheduledAt)); // newest first
		expect((await n.request("DELETE", `/jobs/${ticker.body.id}`)).status).toBe(200);

		// ~107 KB of output: the last 64 KiB are kept, which MySQL's TEXT (64 KiB - 1 bytes) cannot hold.
		const big = await n.request("POST", "/jobs", { body: { type: "command", schedule: "0 0 1 1 *", executable: "seq 1 20000" } });
		expect(big.status).toBe(201);
		expect((await n.request("POST", `/jobs/${big.body.id}/run`)).status).toBe(202);
		const [run] = await waitFor(
			async () => {
				const r = (await n.request("GET", `/jobs/${big.body.id}/runs`)).body as any[];
				return r.length === 1 && r[0].status === "succeeded" ? r : null;
			},
			15_000,
			"the big-output run",
		);
		const full = Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join("");
		expect(full.length).toBeGreaterThan(100_000);
		const marker = `[...${full.length - 64 * 1024} bytes truncated...]\n`;
		expect(run.output).toBe(marker + full.slice(-64 * 1024));
		const [[column]] = (await admin.query(
			"SELECT DATA_TYPE AS t FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'runs' AND COLUMN_NAME = 'output'",
			[db.name],
		)) as any;
		expect(String(column.t).toLowerCase()).toBe("mediumtext");
		const [[stored]] = (await admin.query(`SELECT LENGTH(output) AS n FROM \`${db.name}\`.runs WHERE id = ?`, [run.id])) as any;
		expect(Number(stored.n)).toBe(marker.length + 64 * 1024); // more than TEXT's 65535 bytes

		// The unique key (jobId, scheduledAt, attempt), in that order, and MySQL enforces it.
		const [index] = (await admin.query(`SHOW INDEX FROM \`${db.name}\`.runs WHERE Key_name = 'runs_fire_unique'`)) as any;
		expect((index as any[]).sort((a, b) => a.Seq_in_index - b.Seq_in_index).map((r) => [r.Column_name, Number(r.Non_unique)])).toEqual([
			["jobId", 0],
			["scheduledAt", 0],
			["attempt", 0],
		]);
		const [[row]] = (await admin.query(`SELECT * FROM \`${db.name}\`.runs WHERE id = ?`, [runs[0].id])) as any;
		await expect(
			admin.query(
				`INSERT INTO \`${db.name}\`.runs (id, jobId, scheduledAt, attempt, \`trigger\`, status, output) VALUES (?, ?, ?, ?, 'schedule', 'running', '')`,
				["dup-" + suffix().slice(0, 30), row.jobId, row.scheduledAt, row.attempt],
			),
		).rejects.toMatchObject({ code: "ER_DUP_ENTRY" });
	}, 40_000);

	it("refuses with a 422 what a job's columns cannot hold (each was a 500 here, SQLite took it)", async () => {
		const db = await freshDatabase("bounds");
		const n = await node({ DATABASE_URL: db.url });
		const base = { type: "command", schedule: "0 0 29 2 *", executable: "true" };
		const env = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`K${i}`, "v".repeat(4096)]));
		const longSchedule = `${Array.from({ length: 60 }, (_, i) => i).join(",")} ${Array.from({ length: 24 }, (_, i) => i).join(",")} * * *`;
		for (const [over, field] of [
			[{ executable: "x".repeat(65536) }, "executable"],
			[{ env }, "env"],
			[{ schedule: longSchedule }, "schedule"],
		] as const) {
			const res = await n.request("POST", "/jobs", { body: { ...base, ...over } });
			expect([res.status, res.body.data?.field]).toEqual([422, field]);
		}
		const fits = await n.request("POST", "/jobs", { body: { ...base, executable: "x".repeat(65535) } });
		expect(fits.status).toBe(201);
		expect(((await n.request("GET", `/jobs/${fits.body.id}`)).body.executable as string).length).toBe(65535);
	});

	it("creates the schema once, without error, when three nodes start at once; a fourth start on it is fine", async () => {
		const db = await freshDatabase("schema");
		const logged: string[] = [];
		const capture = (...args: unknown[]) => void logged.push(args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(" "));
		const errorSpy = jest.spyOn(console, "error").mockImplementation(capture);
		const warnSpy = jest.spyOn(console, "warn").mockImplementation(capture);
		try {
			const three = ["jobs", "jobs", "api,jobs"].map((services, i) => {
				const dataDir = tempDir();
				dirs.push(dataDir);
				const config = loadConfig({
					CRONJOB_ADMIN_TOKEN: ADMIN_TOKEN,
					PORT: "0",
					LOG_LEVEL: "warn",
					NODE_ID: `schema-${i}-${suffix()}`,
					SERVICES: services,
					DATABASE_URL: db.url,
					CRONJOB_DATA_DIR: dataDir,
				});
				const broker = createNode(config);
				brokers.push(broker);
				return broker;
			});
			await within(Promise.all(three.map((b) => b.start())), 30_000, "three nodes starting at once on an empty database").catch((err: Error) => {
				throw new Error(`${err.message}; logged:\n${logged.join("\n").slice(0, 4000)}`);
			});
			for (const b of three) expect(await b.call("jobs.schedulable", {})).toEqual([]);
		} finally {
			errorSpy.mockRestore();
			warnSpy.mockRestore();
		}
		expect(logged.filter((l) => /error|reconnect|fail/i.test(l))).toEqual([]);

		const [tables] = (await admin.query("SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", [db.name])) as any;
		expect((tables as any[]).map((r) => r.t).sort()).toEqual(["job_audit", "jobs", "runs", "tokens", "user_audit", "users"]);
		const indexes = async () => {
			const [rows] = (await admin.query(
				"SELECT TABLE_NAME AS t, INDEX_NAME AS i, NON_UNIQUE AS nu, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS c FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE ORDER BY TABLE_NAME, INDEX_NAME",
				[db.name],
			)) as any;
			return (rows as any[]).map((r) => `${r.t}.${r.i}(${r.c})${Number(r.nu) ? "" : " unique"}`).sort();
		};
		const created = await indexes();
		expect(created).toEqual([
			"job_audit.PRIMARY(id) unique",
			"job_audit.job_audit_at(at)",
			"job_audit.job_audit_target(target)",
			"job_audit.job_audit_user_id(userId)",
			"jobs.PRIMARY(id) unique",
			"jobs.jobs_owner(owner)",
			"jobs.jobs_status(status)",
			"jobs.jobs_worker(worker)",
			"runs.PRIMARY(id) unique",
			"runs.runs_fire_unique(jobId,scheduledAt,attempt) unique",
			"runs.runs_status(status)",
			"tokens.PRIMARY(id) unique",
			"tokens.tokens_hash_unique(tokenHash) unique",
			"tokens.tokens_user_name_unique(userId,name) unique",
			"user_audit.PRIMARY(id) unique",
			"user_audit.user_audit_at(at)",
			"user_audit.user_audit_target(target)",
			"user_audit.user_audit_user_id(userId)",
			"users.PRIMARY(id) unique",
			"users.users_name_unique(name) unique",
			"users.users_token_unique(tokenHash) unique",
		]);
		const [[admins]] = (await admin.query(`SELECT COUNT(*) AS n FROM \`${db.name}\`.users`)) as any;
		expect(Number(admins.n)).toBe(1); // the built-in admin, created once

		// A fourth node on the existing schema: starts, serves, changes nothing in the schema.
		const fourth = await node({ SERVICES: "api,jobs", DATABASE_URL: db.url });
		const created4 = await fourth.request("POST", "/jobs", { body: { type: "command", schedule: "0 0 1 1 *", executable: "true" } });
		expect(created4.status).toBe(201);
		expect((await fourth.request("GET", "/jobs")).body.map((j: any) => j.id)).toEqual([created4.body.id]);
		expect(await indexes()).toEqual(created);
	}, 60_000);

	describe("database restart", () => {
		let mdb: PrivateMariaDb | null = null;
		let n: TestNode | null = null;

		afterAll(async () => {
			await n?.stop().catch(() => undefined);
			await mdb?.stop();
		});

		it("answers 503 while the database is down, keeps results and fires, and loses nothing after it restarts", async () => {
			const database = `cronjob_test_restart_${suffix()}`;
			mdb = await startPrivateMariaDb([database]);
			const dataDir = tempDir();
			dirs.push(dataDir);
			n = await startNode({ DATABASE_URL: mdb.url(database), CRONJOB_DATA_DIR: dataDir });
			const node = n;
			const status = () => node.broker.call<{ pendingResults: number; pendingFires: number }, Record<string, never>>("worker.status", {});

			// Every second, each run 2 s long: two or three runs are always in flight.
			const job = await node.request("POST", "/jobs", {
				body: { type: "command", schedule: "* * * * * *", executable: 'echo "run $CRONJOB_SCHEDULED_AT"; sleep 2', name: "ticker" },
			});
			expect(job.status).toBe(201);
			const runs = async () => {
				const res = await node.request("GET", `/jobs/${job.body.id}/runs?limit=1000`);
				if (res.status !== 200) throw new Error(`GET runs: ${res.status} ${JSON.stringify(res.body)}`);
				return res.body as any[];
			};
			const before = await waitFor(
				async () => {
					const r = await runs();
					return r.filter((x) => x.status === "succeeded").length >= 2 && r.some((x) => x.status === "running") ? r : null;
				},
				20_000,
				"two runs done and more in flight",
			);

			// ---- the crash
			await mdb.kill("SIGKILL");
			const downAt = Date.now();

			const t0 = Date.now();
			const list = await node.request("GET", "/jobs");
			expect(Date.now() - t0).toBeLessThan(10_000);
			expect(list.status).toBe(503);
			expect(list.headers.get("content-type")).toMatch(/application\/json/);
			expect(list.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", data: { backend: "database" } });

			const t1 = Date.now();
			const health = await node.request("GET", "/health", { token: null });
			expect(Date.now() - t1).toBeLessThan(10_000);
			expect(health.status).toBe(503);
			expect(health.body.status).toBe("degraded");
			expect(health.body.backends.database.ok).toBe(false);
			expect(health.body.backends.coordination.ok).toBe(true);

			// The runs in flight finish while the database is down: their results are kept (in memory
			// and in the outbox file). New fires cannot be recorded: the worker keeps them too.
			await waitFor(async () => (await status()).pendingResults >= 1, 10_000, "results kept in the outbox");
			expect(fs.readdirSync(dataDir).some((f) => /^outbox-.*\.json$/.test(f))).toBe(true);
			await waitFor(async () => (await status()).pendingFires >= 2, 10_000, "fires that could not start, kept");

			// ---- the restart, same port, same data
			await mdb.start();
			const upAt = Date.now();
			await waitFor(async () => (await node.request("GET", "/jobs")).status === 200, 20_000, "GET /jobs 200 after the restart");
			await waitFor(async () => (await node.request("GET", "/health", { token: null })).status === 200, 20_000, "GET /health 200 after the restart");
			await waitFor(
				async () => {
					const s = await status();
					return s.pendingResults === 0 && s.pendingFires === 0;
				},
				20_000,
				"kept results written and kept fires handled",
			);
			expect(fs.readdirSync(dataDir).some((f) => /^outbox-.*\.json$/.test(f))).toBe(false);

			// The job keeps firing on schedule.
			await waitFor(
				async () => (await runs()).some((r) => r.trigger === "schedule" && r.status === "succeeded" && Date.parse(r.scheduledAt) > upAt + 1000),
				15_000,
				"scheduled runs after the restart",
			);

			// Everything recorded before the crash is final; the runs that were in flight succeeded (their
			// results came from the outbox).
			const after = await waitFor(
				async () => {
					const r = await runs();
					const byId = new Map(r.map((x) => [x.id, x]));
					return before.every((b) => FINAL.includes(byId.get(b.id)?.status)) ? r : null;
				},
				15_000,
				"the runs from before the crash final",
			);
			const byId = new Map(after.map((x) => [x.id, x]));
			for (const b of before) {
				expect(byId.get(b.id)).toMatchObject({ status: "succeeded", exitCode: 0, output: `run ${b.scheduledAt}\n` });
			}

			// No fire lost: every second from the first fire to the newest has a row (run, caught up or
			// missed), and none is recorded twice with the same attempt.
			const times = after.map((r) => Date.parse(r.scheduledAt));
			const keys = after.map((r) => `${r.scheduledAt}/${r.attempt}`);
			expect(new Set(keys).size).toBe(keys.length);
			const seconds = new Set(times);
			for (let t = Math.min(...times); t <= Math.max(...times); t += 1000)
				expect([new Date(t).toISOString(), seconds.has(t)]).toEqual([new Date(t).toISOString(), true]);
			// The fires during the outage followed the misfire policy (run_once): the newest ran late
			// (trigger catchup), the older ones are marked missed. Fires are recorded up to
			// CRONJOB_PREFIRE_MS ahead of their instant, so the outage covers that much more.
			const outage = after.filter((r) => Date.parse(r.scheduledAt) > downAt && Date.parse(r.scheduledAt) < upAt + node.config.prefireMs);
			expect(outage.length).toBeGreaterThanOrEqual(2);
			expect(outage.filter((r) => r.trigger === "catchup" && r.status !== "missed").length).toBeGreaterThanOrEqual(1);
			expect(outage.some((r) => r.status === "missed")).toBe(true);

			// Nothing stays running: every run older than its 2 s run time (plus slack) is final.
			const settledBefore = Date.now() - 4000;
			await waitFor(
				async () => (await runs()).filter((r) => Date.parse(r.scheduledAt) < settledBefore).every((r) => FINAL.includes(r.status)),
				15_000,
				"no run left running",
			);
			expect((await node.request("DELETE", `/jobs/${job.body.id}`)).status).toBe(200);
		}, 80_000);
	});
});
