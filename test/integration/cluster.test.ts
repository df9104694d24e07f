/**
 * End to end: the real cluster as separate OS processes on loopback, on the real backends of
 * `scripts/services.sh` (MariaDB, ZooKeeper, NATS; S3 when set). One API node (SERVICES=api,jobs),
 * two managers, three workers. Per-second jobs (misfire run_all) append "<job id> <scheduled at>" to a
 * shared file; then a worker is SIGKILLed, the leading manager is SIGKILLed (the standby takes over)
 * and restarted, the new leader is SIGKILLed and restarted, the worker is restarted. The file and the
 * runs must show: no fire time lost, none run twice except a run cut off by the worker kill (run again
 * with attempt 2, the first attempt marked failed "interrupted"), the dead worker's jobs resumed on the
 * survivors.
 *
 * Every run is private: its own database (cronjob_test_<random>, dropped afterwards), ZooKeeper root
 * (/cronjob-e2e-<random>, deleted afterwards) and Moleculer namespace. Needs DATABASE_URL, ZOOKEEPER and
 * TRANSPORTER (eval "$(scripts/services.sh env)"); skipped with a message when they are unset.
 */
import { removeZkTree } from "../support/zk-tree";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mysql from "mysql2/promise";
import { freePort, startProcess, type NodeProcess } from "../support/proc";
import { waitFor } from "../support/wait";
import { connectionOptions } from "../support/mariadb";

const { DATABASE_URL, ZOOKEEPER, TRANSPORTER } = process.env;
const BACKENDS = !!(DATABASE_URL && ZOOKEEPER && TRANSPORTER);
if (!BACKENDS) {
	console.warn('cluster.test.ts SKIPPED: DATABASE_URL, ZOOKEEPER and TRANSPORTER must be set (scripts/services.sh start; eval "$(scripts/services.sh env)")');
}

const TOKEN = `e2e-admin-${randomBytes(12).toString("hex")}`;
const RUN_ID = randomBytes(5).toString("hex");
const DB_NAME = `cronjob_test_${RUN_ID}`;
const ZK_ROOT = `/cronjob-e2e-${RUN_ID}`;
const NAMESPACE = `e2e-${RUN_ID}`;
const JOBS = 6;
const VICTIM = "worker-2";
const WORKERS = ["worker-1", "worker-2", "worker-3"];
const MANAGERS = ["manager-1", "manager-2"];

interface Incarnation {
	name: string;
	proc: NodeProcess;
	startedAt: number;
}

interface RunView {
	id: string;
	jobId: string;
	scheduledAt: string;
	startedAt: string | null;
	finishedAt: string | null;
	status: string;
	node: string | null;
	attempt: number;
	trigger: string;
	error: string | null;
}

let tmp = "";
let dbCreated = false;
let failed = false;
const incarnations: Incarnation[] = [];
const current = new Map<string, Incarnation>();
/** Names that must be running; a waitUntil fails at once when one of them exits. */
const expected = new Set<string>();
let baseEnv: Record<string, string> = {};
let apiBase = "";

const dbConnOptions = (database?: string): mysql.ConnectionOptions => connectionOptions(DATABASE_URL as string, database);

/** Run SQL as the URL's user, or as root over MariaDB's socket when that user may not. */
async function adminSql(sql: string): Promise<void> {
	let conn: mysql.Connection;
	try {
		conn = await mysql.createConnection(dbConnOptions());
		try {
			await conn.query(sql);
			return;
		} catch (err) {
			const code = (err as { code?: string }).code;
			if (code !== "ER_DBACCESS_DENIED_ERROR" && code !== "ER_ACCESS_DENIED_ERROR") throw err;
		} finally {
			await conn.end().catch(() => undefined);
		}
	} catch (err) {
		const code = (err as { code?: string }).code;
		if (code !== "ER_DBACCESS_DENIED_ERROR" && code !== "ER_ACCESS_DENIED_ERROR") throw err;
	}
	const socket = [path.join(process.env.CRONJOB_SERVICES_DIR || "/tmp/cronjob-services", "mariadb/mysqld.sock"), "/run/mysqld/mysqld.sock"].find((s) =>
		fs.existsSync(s),
	);
	if (!socket) throw new Error("cannot run SQL as the DATABASE_URL user and found no MariaDB socket for root");
	conn = await mysql.createConnection({ socketPath: socket, user: "root" });
	try {
		await conn.query(sql);
	} finally {
		await conn.end().catch(() => undefined);
	}
}

function privateDatabaseUrl(): string {
	const u = new URL(DATABASE_URL as string);
	u.pathname = `/${DB_NAME}`;
	return u.toString();
}

/** Delete the run's ZooKeeper root (a dead process's session may hold ephemeral nodes for a moment). */
function removeZkRoot(): Promise<void> {
	return removeZkTree(ZOOKEEPER as string, ZK_ROOT, 15_000);
}

function start(name: string, env: Record<string, string>): Incarnation {
	const inc: Incarnation = { name, proc: startProcess({ ...baseEnv, NODE_ID: name, ...env }), startedAt: Date.now() };
	incarnations.push(inc);
	current.set(name, inc);
	expected.add(name);
	return inc;
}

async function kill(name: string): Promise<number> {
	const inc = current.get(name);
	if (!inc) throw new Error(`no process ${name}`);
	expected.delete(name);
	const at = Date.now();
	await inc.proc.kill("SIGKILL");
	return at;
}

function log(name: string): string {
	return current.get(name)?.proc.log() ?? "";
}

/** waitFor, failing at once (with the log) when an expected process exited. */
async function waitUntil<T>(cond: () => T | Promise<T>, timeoutMs: number, what: string, intervalMs = 100): Promise<NonNullable<T>> {
	let died: Incarnation | null = null;
	const value = await waitFor(
		async () => {
			for (const name of expected) {
				const inc = current.get(name);
				if (inc && (inc.proc.child.exitCode !== null || inc.proc.child.signalCode !== null)) {
					died = inc;
					return true as unknown as T;
				}
			}
			return cond();
		},
		timeoutMs,
		what,
		intervalMs,
	);
	if (died !== null) {
		const d = died as Incarnation;
		throw new Error(
			`${d.name} exited (code ${d.proc.child.exitCode}, signal ${d.proc.child.signalCode}) while waiting for ${what}; its log:\n${d.proc.log().slice(-6000)}`,
		);
	}
	return value;
}

async function api(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
	const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
	if (body !== undefined) headers["content-type"] = "application/json";
	// A request routed to a just-killed node waits for Moleculer's timeout: give up early and retry.
	const res = await fetch(apiBase + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(8000) });
	const text = await res.text();
	let parsed: unknown = text;
	try {
		parsed = text ? JSON.parse(text) : null;
	} catch {
		/* not JSON */
	}
	return { status: res.status, body: parsed };
}

async function runsOf(jobId: string): Promise<RunView[]> {
	const r = await api("GET", `/jobs/${jobId}/runs?limit=1000`);
	if (r.status !== 200) throw new Error(`GET /jobs/${jobId}/runs: ${r.status} ${JSON.stringify(r.body)}`);
	return r.body as RunView[];
}

async function workers(): Promise<{ id: string; jobs: number }[]> {
	const r = await api("GET", "/workers");
	if (r.status !== 200) throw new Error(`GET /workers: ${r.status} ${JSON.stringify(r.body)}`);
	return r.body as { id: string; jobs: number }[];
}

function readFires(file: string): { jobId: string; at: number }[] {
	if (!fs.existsSync(file)) return [];
	const out: { jobId: string; at: number }[] = [];
	for (const line of fs.readFileSync(file, "utf8").split("\n")) {
		const m = /^(\S+) (\S+)$/.exec(line.trim());
		if (!m) continue;
		const at = Date.parse(m[2]);
		if (Number.isFinite(at)) out.push({ jobId: m[1], at });
	}
	return out;
}

function leading(name: string): boolean {
	const l = log(name);
	return l.lastIndexOf("leads the managers") > l.lastIndexOf("lost the leadership");
}

function started(name: string): boolean {
	return /distributed-cronjob node \S+ runs/.test(log(name));
}

const maybe = BACKENDS ? describe : describe.skip;

maybe("cluster as processes (MariaDB, ZooKeeper, NATS)", () => {
	beforeAll(async () => {
		tmp = fs.mkdtempSync(path.join(os.tmpdir(), `cronjob-e2e-${RUN_ID}-`));
		fs.chmodSync(tmp, 0o755);
		await adminSql(`CREATE DATABASE \`${DB_NAME}\``);
		dbCreated = true;
		baseEnv = {
			DATABASE_URL: privateDatabaseUrl(),
			ZOOKEEPER: ZOOKEEPER as string,
			ZOOKEEPER_ROOT: ZK_ROOT,
			ZOOKEEPER_SESSION_TIMEOUT_MS: "2000",
			TRANSPORTER: TRANSPORTER as string,
			NAMESPACE,
			CRONJOB_ADMIN_TOKEN: TOKEN,
			CRONJOB_SECRET_KEY: randomBytes(32).toString("hex"),
			LOG_LEVEL: "info",
		};
		for (const k of ["S3_ENDPOINT", "S3_BUCKET", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
			const v = process.env[k];
			if (v) baseEnv[k] = v;
		}
	}, 30_000);

	afterAll(async () => {
		await Promise.all(incarnations.map((i) => i.proc.kill("SIGKILL").catch(() => undefined)));
		if (failed && tmp) {
			const logDir = path.join(tmp, "logs");
			fs.mkdirSync(logDir, { recursive: true });
			incarnations.forEach((inc, i) => fs.writeFileSync(path.join(logDir, `${i}-${inc.name}.log`), inc.proc.log()));
			console.log(`cluster.test.ts: full process logs kept in ${logDir}`);
		}
		const errors: unknown[] = [];
		if (dbCreated) await adminSql(`DROP DATABASE IF EXISTS \`${DB_NAME}\``).catch((e) => errors.push(e));
		if (BACKENDS) await removeZkRoot().catch((e) => errors.push(e));
		if (tmp && !failed) fs.rmSync(tmp, { recursive: true, force: true });
		if (errors.length > 0) throw errors[0];
	}, 40_000);

	it("keeps every fire through a worker kill and two manager failovers", async () => {
		try {
			await scenario();
		} catch (err) {
			failed = true;
			const dump = incarnations
				.map(
					(inc) =>
						`===== ${inc.name} (pid ${inc.proc.child.pid}, started ${new Date(inc.startedAt).toISOString()}) =====\n${inc.proc.log().split("\n").slice(-60).join("\n")}`,
				)
				.join("\n");
			console.log(`cluster.test.ts failed; process logs (tails):\n${dump}`);
			throw err;
		}
	}, 175_000);
});

async function scenario(): Promise<void> {
	const shared = path.join(tmp, "shared");
	fs.mkdirSync(shared);
	fs.chmodSync(shared, 0o777); // jobs run as nobody when the tests run as root
	const file = path.join(shared, "fires.log");
	const dataDir = (name: string) => {
		const d = path.join(tmp, name);
		fs.mkdirSync(d, { recursive: true });
		fs.chmodSync(d, 0o777);
		return d;
	};

	// ---- the cluster: the API node first (it creates the tables), then the managers and workers
	const port = await freePort();
	apiBase = `http://127.0.0.1:${port}`;
	start("api-1", { SERVICES: "api,jobs", PORT: String(port), CRONJOB_DATA_DIR: dataDir("api-1") });
	await waitUntil(async () => (await api("GET", "/jobs").catch(() => ({ status: 0 }))).status === 200, 60_000, "the API node");
	for (const m of MANAGERS) start(m, { SERVICES: "manager", CRONJOB_DATA_DIR: dataDir(m) });
	for (const w of WORKERS) start(w, { SERVICES: "worker", CRONJOB_DATA_DIR: dataDir(w) });
	await waitUntil(() => [...MANAGERS, ...WORKERS].every(started), 90_000, "every node started");
	await waitUntil(() => MANAGERS.some(leading), 30_000, "a leading manager");
	const leaders = MANAGERS.filter(leading);
	expect(leaders).toHaveLength(1);
	const firstLeader = leaders[0];
	const standby = MANAGERS.find((m) => m !== firstLeader) as string;
	await waitUntil(async () => (await workers()).map((w) => w.id).join() === WORKERS.join(), 30_000, "three registered workers");
	await waitUntil(async () => (await api("GET", "/health").catch(() => ({ status: 0 }))).status === 200, 30_000, "GET /health 200");

	// ---- per-second jobs, spread over the three workers
	const jobs: { id: string; createdAt: number }[] = [];
	for (let i = 0; i < JOBS; i++) {
		const r = await api("POST", "/jobs", {
			type: "command",
			name: `e2e-${i}`,
			schedule: "* * * * * *",
			misfire: "run_all",
			// The sleep keeps each run in flight for a while after it wrote, so the worker kill cuts runs off.
			executable: `echo "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT" >> ${file}; sleep 0.6`,
		});
		expect(r.status).toBe(201);
		jobs.push({ id: r.body.id, createdAt: Date.parse(r.body.createdAt) });
	}
	await waitUntil(
		async () => {
			const ws = await workers();
			return ws.length === 3 && ws.every((w) => w.jobs > 0);
		},
		30_000,
		"jobs on all three workers (GET /workers)",
	);
	// Each job runs on the worker it is assigned to, and has fired a few times there.
	const holder = new Map<string, string>();
	await waitUntil(
		async () => {
			const list = (await api("GET", "/jobs")).body as { id: string; worker: string | null }[];
			for (const job of jobs) {
				const w = list.find((j) => j.id === job.id)?.worker;
				const runs = await runsOf(job.id);
				const done = runs.filter((r) => r.status === "succeeded" && r.node === w);
				if (!w || done.length < 2) return false;
				holder.set(job.id, w);
			}
			return new Set(holder.values()).size === 3;
		},
		30_000,
		"every job firing on its worker, all three workers busy",
	);
	const victimJobs = jobs.filter((j) => holder.get(j.id) === VICTIM).map((j) => j.id);
	expect(victimJobs.length).toBeGreaterThan(0);

	// ---- SIGKILL a worker while its runs are in flight (they wrote, then sleep): its jobs move to
	// the survivors, the cut-off runs run again (attempt 2) and the missed fires catch up there
	const cutSecond = await waitUntil(
		() => {
			const now = Date.now();
			const second = Math.floor(now / 1000) * 1000;
			if (now - second < 100 || now - second > 350) return null;
			const fires = readFires(file);
			return victimJobs.every((id) => fires.some((f) => f.jobId === id && f.at === second)) ? second : null;
		},
		20_000,
		`runs of ${VICTIM} in flight`,
		10,
	);
	const workerKilledAt = await kill(VICTIM);
	let failoverSeenMs = 0;
	const firstSurvivorRun = await waitUntil(
		async () => {
			let first = Infinity;
			for (const id of victimJobs) {
				const moved = (await runsOf(id)).filter((r) => r.node !== VICTIM && r.startedAt !== null);
				if (moved.length === 0) return null;
				first = Math.min(first, ...moved.map((r) => Date.parse(r.startedAt as string)));
			}
			failoverSeenMs = Date.now() - workerKilledAt;
			return first;
		},
		30_000,
		`${VICTIM}'s jobs running on the survivors`,
		100,
	);
	const workerFailoverMs = firstSurvivorRun - workerKilledAt;

	// ---- SIGKILL the leading manager: the standby takes over; restart the killed one
	const takeovers: number[] = [];
	const failOver = async (leader: string, next: string) => {
		expect(leading(leader)).toBe(true);
		expect(leading(next)).toBe(false); // a (re)started candidate does not usurp a live leader
		const killedAt = await kill(leader);
		await waitUntil(() => leading(next), 30_000, `${next} to take over from ${leader}`, 10);
		takeovers.push(Date.now() - killedAt);
		start(leader, { SERVICES: "manager", CRONJOB_DATA_DIR: dataDir(leader) });
		await waitUntil(() => started(leader), 60_000, `${leader} restarted`);
	};
	await failOver(firstLeader, standby);
	await failOver(standby, firstLeader);

	// ---- restart the killed worker: it gets jobs again from the current leader
	const workerRestartedAt = Date.now();
	start(VICTIM, { SERVICES: "worker", CRONJOB_DATA_DIR: dataDir(VICTIM) });
	await waitUntil(() => started(VICTIM), 60_000, `${VICTIM} restarted`);
	await waitUntil(
		async () => {
			const ws = await workers();
			return ws.length === 3 && ws.every((w) => w.jobs > 0);
		},
		30_000,
		"jobs on all three workers again",
	);
	await waitUntil(
		async () => {
			for (const id of jobs.map((j) => j.id)) {
				if ((await runsOf(id)).some((r) => r.node === VICTIM && r.status === "succeeded" && Date.parse(r.startedAt as string) >= workerRestartedAt))
					return true;
			}
			return false;
		},
		30_000,
		`runs on the restarted ${VICTIM}`,
	);

	// Every job fires on time again before we stop it.
	const steadyFrom = Date.now() + 1000;
	await waitUntil(
		() => {
			const fires = readFires(file);
			return jobs.every((j) => fires.some((f) => f.jobId === j.id && f.at >= steadyFrom));
		},
		30_000,
		"every job firing after the restarts",
	);

	// ---- stop the writes
	const deleteFrom = Date.now();
	for (const job of jobs) expect((await api("DELETE", `/jobs/${job.id}`)).status).toBe(200);
	const deletedAt = Date.now();
	// Runs in flight end; then nothing fires any more.
	await waitUntil(
		async () => {
			for (const job of jobs) if ((await runsOf(job.id)).some((r) => r.status === "running")) return false;
			return true;
		},
		30_000,
		"no run still running after the deletion",
	);
	await waitFor(() => Date.now() > deletedAt + 3000, 10_000, "time for a late fire to show", 100);

	// ---- checks
	const fires = readFires(file);
	const lastRequired = Math.floor(deleteFrom / 1000) * 1000 - 2000;
	const report: Record<string, unknown>[] = [];
	for (const job of jobs) {
		const counts = new Map<number, number>();
		for (const f of fires) if (f.jobId === job.id) counts.set(f.at, (counts.get(f.at) ?? 0) + 1);
		const seconds = [...counts.keys()].sort((a, b) => a - b);
		// The first fire is the first whole second after the creation, and it is there.
		expect(seconds[0]).toBe(Math.floor(job.createdAt / 1000) * 1000 + 1000);
		// No fire time lost up to the deletion.
		const missing: string[] = [];
		for (let t = seconds[0]; t <= lastRequired; t += 1000) if (!counts.has(t)) missing.push(new Date(t).toISOString());
		expect({ job: job.id, missing }).toEqual({ job: job.id, missing: [] });
		// Nothing fired well after the deletion.
		expect(seconds[seconds.length - 1]).toBeLessThanOrEqual(deletedAt + 2000);

		const runs = await runsOf(job.id);
		expect(runs.length).toBeLessThan(1000);
		const bySecond = new Map<number, RunView[]>();
		for (const r of runs) {
			const t = Date.parse(r.scheduledAt);
			bySecond.set(t, [...(bySecond.get(t) ?? []), r]);
		}
		// Twice only when the worker kill cut the run off: attempt 1 interrupted on the victim, attempt 2 ran.
		const twice = seconds.filter((t) => (counts.get(t) ?? 0) > 1);
		for (const t of twice) {
			expect({ job: job.id, at: new Date(t).toISOString(), count: counts.get(t), victimJob: victimJobs.includes(job.id) }).toEqual({
				job: job.id,
				at: new Date(t).toISOString(),
				count: 2,
				victimJob: true,
			});
		}
		// Fires prefired (held) when the job was deleted were cancelled: skipped, never ran.
		for (const r of runs.filter((x) => x.status === "skipped")) {
			expect(Date.parse(r.scheduledAt)).toBeGreaterThan(deleteFrom);
			expect(r.error).toMatch(/cancelled before its instant/);
			expect(counts.has(Date.parse(r.scheduledAt))).toBe(false);
		}
		// Every failed run is such an interrupted first attempt, followed by a successful attempt 2.
		for (const r of runs.filter((x) => x.status !== "succeeded" && x.status !== "skipped")) {
			expect(r).toMatchObject({ status: "failed", attempt: 1, node: VICTIM });
			expect(r.error).toMatch(/interrupted/);
			expect(victimJobs).toContain(job.id);
			const again = bySecond.get(Date.parse(r.scheduledAt)) ?? [];
			expect(again.some((x) => x.attempt === 2 && x.status === "succeeded" && x.node !== VICTIM)).toBe(true);
		}
		for (const t of twice) {
			const attempts = bySecond.get(t) ?? [];
			expect(attempts.some((x) => x.attempt === 1 && x.status === "failed" && x.node === VICTIM && /interrupted/.test(x.error ?? ""))).toBe(true);
			expect(attempts.some((x) => x.attempt === 2 && x.status === "succeeded")).toBe(true);
		}
		// The file and the recorded runs agree: one successful run per fire second.
		const succeeded = runs.filter((r) => r.status === "succeeded").map((r) => Date.parse(r.scheduledAt));
		expect(new Set(succeeded).size).toBe(succeeded.length);
		expect([...succeeded].sort((a, b) => a - b)).toEqual(seconds);
		// The victim's jobs resumed elsewhere after the kill.
		if (victimJobs.includes(job.id)) {
			expect(runs.some((r) => r.node !== VICTIM && r.startedAt !== null && Date.parse(r.startedAt) >= workerKilledAt)).toBe(true);
		}
		report.push({
			job: job.id.slice(0, 8),
			fires: seconds.length,
			duplicates: twice.length,
			interrupted: runs.filter((r) => r.status === "failed").length,
			nodes: [...new Set(runs.map((r) => r.node))].sort(),
		});
	}

	// The runs in flight at the kill were cut off and ran again.
	for (const id of victimJobs) {
		const attempts = (await runsOf(id)).filter((r) => Date.parse(r.scheduledAt) === cutSecond);
		expect(attempts.map((r) => `${r.attempt} ${r.status} ${r.node === VICTIM ? "victim" : "survivor"}`).sort()).toEqual([
			"1 failed victim",
			"2 succeeded survivor",
		]);
	}

	const figures = { workerFailoverMs, failoverSeenMs, managerTakeoverMs: takeovers, victim: VICTIM, victimJobs: victimJobs.length, firstLeader, jobs: report };
	console.log(`cluster.test.ts figures: ${JSON.stringify(figures)}`);
	expect(workerFailoverMs).toBeLessThan(10_000);
	for (const t of takeovers) expect(t).toBeLessThan(10_000);
}
