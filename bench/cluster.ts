/**
 * Shared setup of the cluster benchmarks: the cluster as separate OS processes (dist/bin/cronjob.js)
 * on the servers of scripts/services.sh (MariaDB, ZooKeeper, NATS), each bench run private: its own
 * database (cronjob_test_bench_<id>, dropped afterwards), ZooKeeper root (/cronjob-bench-<id>, deleted
 * afterwards) and Moleculer namespace. A broker client without services joins the namespace to call
 * `worker.status` on each worker and to broadcast events. Needs DATABASE_URL, ZOOKEEPER, TRANSPORTER
 * (eval "$(scripts/services.sh env)").
 */
import { waitFor } from "../test/support/wait";
import { removeZkTree } from "../test/support/zk-tree";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ServiceBroker } from "moleculer";
import mysql from "mysql2/promise";
import type { WorkerStatus } from "../lib/engine/worker/engine";
import { freePort } from "../test/support/proc";
import { connectionOptions } from "../test/support/mariadb";

export const BIN = path.resolve(__dirname, "../bin/cronjob.js");

export function sleep(ms: number): Promise<void> {
	return new Promise((r) => setTimeout(r, ms));
}

export { waitFor, removeZkTree };

/** Re-exported for the cluster benches (scale.ts). */
export { memoryMb } from "./common";

export interface Proc {
	name: string;
	child: ChildProcess;
	pid: number;
	startedAt: number;
	log(): string;
	alive(): boolean;
	exited: Promise<void>;
}

export type { WorkerStatus };

export class BenchCluster {
	readonly id = randomBytes(4).toString("hex");
	readonly dbName = `cronjob_test_bench_${this.id}`;
	readonly zkRoot = `/cronjob-bench-${this.id}`;
	readonly namespace = `bench-${this.id}`;
	readonly token = `bench-${randomBytes(12).toString("hex")}`;
	readonly tmp = fs.mkdtempSync(path.join(os.tmpdir(), `cronjob-bench-${this.id}-`));
	readonly procs = new Map<string, Proc>();
	readonly all: Proc[] = [];
	apiBase = "";
	client: ServiceBroker | null = null;
	private db: mysql.Pool | null = null;
	private dbCreated = false;
	private readonly env: Record<string, string>;

	constructor(extraEnv: Record<string, string> = {}) {
		const { DATABASE_URL, ZOOKEEPER, TRANSPORTER } = process.env;
		if (!DATABASE_URL || !ZOOKEEPER || !TRANSPORTER)
			throw new Error('DATABASE_URL, ZOOKEEPER and TRANSPORTER must be set (scripts/services.sh start; eval "$(scripts/services.sh env)")');
		if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run npx tsc -p .`);
		fs.chmodSync(this.tmp, 0o755);
		const u = new URL(DATABASE_URL);
		u.pathname = `/${this.dbName}`;
		this.env = {
			DATABASE_URL: u.toString(),
			ZOOKEEPER,
			ZOOKEEPER_ROOT: this.zkRoot,
			ZOOKEEPER_SESSION_TIMEOUT_MS: "2000",
			TRANSPORTER,
			NAMESPACE: this.namespace,
			CRONJOB_ADMIN_TOKEN: this.token,
			CRONJOB_SECRET_KEY: randomBytes(32).toString("hex"),
			LOG_LEVEL: "info",
			...extraEnv,
		};
	}

	private connOptions(database?: string): mysql.PoolOptions {
		return connectionOptions(process.env.DATABASE_URL as string, database);
	}

	/** The private database (created now) and the client broker on the private namespace. */
	async setup(): Promise<void> {
		const conn = await mysql.createConnection(this.connOptions());
		try {
			await conn.query(`CREATE DATABASE \`${this.dbName}\``);
			this.dbCreated = true;
		} finally {
			await conn.end();
		}
		this.db = mysql.createPool({ ...this.connOptions(this.dbName), connectionLimit: 4 });
		this.client = new ServiceBroker({
			namespace: this.namespace,
			nodeID: `bench-client-${this.id}`,
			transporter: process.env.TRANSPORTER,
			logger: false,
			requestTimeout: 120_000,
			heartbeatInterval: 2,
			heartbeatTimeout: 6,
		});
		await this.client.start();
	}

	sql<T = unknown>(statement: string, values?: unknown[]): Promise<T> {
		if (!this.db) throw new Error("setup() first");
		return this.db.query(statement, values).then(([rows]) => rows as T);
	}

	dataDir(name: string): string {
		const d = path.join(this.tmp, name);
		fs.mkdirSync(d, { recursive: true });
		fs.chmodSync(d, 0o777);
		return d;
	}

	start(name: string, env: Record<string, string>): Proc {
		let out = "";
		const logFile = fs.openSync(path.join(this.tmp, `${name}-${Date.now()}.log`), "a");
		const child = spawn(process.execPath, [BIN], {
			env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...this.env, NODE_ID: name, CRONJOB_DATA_DIR: this.dataDir(name), ...env },
			stdio: ["ignore", "pipe", "pipe"],
		});
		const onData = (d: Buffer) => {
			const s = d.toString();
			out += s;
			if (out.length > 2_000_000) out = out.slice(-1_000_000);
			fs.writeSync(logFile, s);
		};
		child.stdout?.on("data", onData);
		child.stderr?.on("data", onData);
		const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
		// Closed once the pipes are (`close`): output still arrives after `exit`, and a write to the
		// closed file threw EBADF and ended the bench in its cleanup (a debug log's last lines).
		child.on("close", () => fs.closeSync(logFile));
		const proc: Proc = {
			name,
			child,
			pid: child.pid as number,
			startedAt: Date.now(),
			log: () => out,
			alive: () => child.exitCode === null && child.signalCode === null,
			exited,
		};
		this.procs.set(name, proc);
		this.all.push(proc);
		return proc;
	}

	/** SIGKILL; answers the instant the signal was sent, after the process is gone. */
	async kill(name: string): Promise<number> {
		const p = this.procs.get(name);
		if (!p) throw new Error(`no process ${name}`);
		const at = Date.now();
		if (p.alive()) p.child.kill("SIGKILL");
		await p.exited;
		return at;
	}

	started(name: string): boolean {
		return /distributed-cronjob node \S+ runs/.test(this.procs.get(name)?.log() ?? "");
	}

	leading(name: string): boolean {
		const l = this.procs.get(name)?.log() ?? "";
		return l.lastIndexOf("leads the managers") > l.lastIndexOf("lost the leadership");
	}

	/** Throws when an expected process died (with its log tail). */
	checkAlive(names: string[]): void {
		for (const n of names) {
			const p = this.procs.get(n);
			if (p && !p.alive()) throw new Error(`${n} exited (code ${p.child.exitCode}, signal ${p.child.signalCode}); log tail:\n${p.log().slice(-4000)}`);
		}
	}

	async api(method: string, p: string, body?: unknown): Promise<{ status: number; body: any }> {
		const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
		if (body !== undefined) headers["content-type"] = "application/json";
		const res = await fetch(this.apiBase + p, {
			method,
			headers,
			body: body === undefined ? undefined : JSON.stringify(body),
			signal: AbortSignal.timeout(15_000),
		});
		const text = await res.text();
		let parsed: unknown = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			/* keep text */
		}
		return { status: res.status, body: parsed };
	}

	/** API node (SERVICES=api,jobs; it creates the tables), then managers and workers; waits for a leader and the workers registered. */
	async startCluster(opts: { managers: string[]; workers: string[]; workerEnv?: Record<string, string>; apiEnv?: Record<string, string> }): Promise<void> {
		const port = await freePort();
		this.apiBase = `http://127.0.0.1:${port}`;
		this.start("api-1", { SERVICES: "api,jobs", PORT: String(port), ...opts.apiEnv });
		await waitFor(
			async () => {
				this.checkAlive(["api-1"]);
				return (await this.api("GET", "/jobs").catch(() => ({ status: 0 }))).status === 200;
			},
			60_000,
			"the API node",
			100,
		);
		for (const m of opts.managers) this.start(m, { SERVICES: "manager" });
		for (const w of opts.workers) this.start(w, { SERVICES: "worker", ...opts.workerEnv });
		const names = [...opts.managers, ...opts.workers];
		await waitFor(
			() => {
				this.checkAlive(names);
				return names.every((n) => this.started(n));
			},
			90_000,
			"every node started",
			100,
		);
		await waitFor(() => opts.managers.some((m) => this.leading(m)), 30_000, "a leading manager", 100);
		await waitFor(
			async () =>
				(await this.workers())
					.map((w) => w.id)
					.sort()
					.join() === [...opts.workers].sort().join(),
			30_000,
			"the workers registered",
			100,
		);
	}

	async workers(): Promise<{ id: string; jobs: number; clockOffsetMs: number | null }[]> {
		const r = await this.api("GET", "/workers");
		if (r.status !== 200) throw new Error(`GET /workers: ${r.status} ${JSON.stringify(r.body)}`);
		return r.body;
	}

	async workerStatus(name: string, timeout = 10_000): Promise<WorkerStatus> {
		if (!this.client) throw new Error("setup() first");
		return await this.client.call<WorkerStatus, Record<string, never>>("worker.status", {}, { nodeID: name, timeout });
	}

	/** Rows of the `jobs` table as the jobs service writes them (the columns of JOB_SCHEMA, lib/core/job-schema.ts), in multi-row INSERTs. */
	async insertJobs(n: number, job: { schedule: string; executable: string; misfire?: string }, chunk = 2000): Promise<string[]> {
		const ids: string[] = [];
		const now = Date.now();
		for (let i = 0; i < n; i += chunk) {
			const rows: unknown[][] = [];
			for (let k = i; k < Math.min(n, i + chunk); k++) {
				const id = `${randomBytes(4).toString("hex")}-${randomBytes(2).toString("hex")}-4${randomBytes(2).toString("hex").slice(1)}-8${randomBytes(2).toString("hex").slice(1)}-${randomBytes(6).toString("hex")}`;
				ids.push(id);
				rows.push([
					id,
					`bench-${k}`,
					"scheduled",
					"command",
					job.executable,
					null,
					null,
					job.schedule,
					"UTC",
					null,
					null,
					true,
					"allow",
					0,
					job.misfire ?? "run_once",
					"{}",
					false,
					"bench",
					null,
					null,
					null,
					null,
					now,
					now,
				]);
			}
			await this.sql(
				"INSERT INTO jobs (id, name, status, type, executable, digest, size, schedule, timezone, runAs, timeout, recurring, concurrency, retries, misfire, env, suspended, owner, worker, lastScheduledAt, lastRun, deletedAt, createdAt, updatedAt) VALUES ?",
				[rows],
			);
		}
		return ids;
	}

	/**
	 * How often each text occurs in each process's whole log (the files in the temp folder, not the
	 * tail kept in memory), by process name (a restarted process's logs added up).
	 */
	countInLogs(texts: readonly string[]): Record<string, Record<string, number>> {
		const out: Record<string, Record<string, number>> = {};
		for (const f of fs.readdirSync(this.tmp).filter((x) => x.endsWith(".log"))) {
			const name = f.replace(/-\d+\.log$/, "");
			const log = fs.readFileSync(path.join(this.tmp, f), "utf8");
			const counts = (out[name] ??= Object.fromEntries(texts.map((t) => [t, 0])));
			for (const t of texts) for (let i = log.indexOf(t); i >= 0; i = log.indexOf(t, i + t.length)) counts[t]++;
		}
		return out;
	}

	/** What the jobs service broadcasts after a change: the leading manager reconciles. */
	announceJobsChanged(): void {
		void this.client?.broadcast("jobs.changed", { id: `bench-${this.id}`, op: "created" });
	}

	/** Kill every process, drop the database, delete the ZooKeeper root, remove the temp folder (logs kept with keepLogs). */
	async cleanup(keepLogs = false): Promise<string[]> {
		const errors: string[] = [];
		await Promise.all(
			this.all.map(async (p) => {
				if (p.alive()) p.child.kill("SIGKILL");
				await p.exited;
			}),
		);
		await this.client?.stop().catch((e) => errors.push(`broker: ${(e as Error).message}`));
		await this.db?.end().catch(() => undefined);
		if (this.dbCreated) {
			try {
				const conn = await mysql.createConnection(this.connOptions());
				await conn.query(`DROP DATABASE IF EXISTS \`${this.dbName}\``);
				await conn.end();
			} catch (e) {
				errors.push(`drop database: ${(e as Error).message}`);
			}
		}
		await removeZkTree(process.env.ZOOKEEPER as string, this.zkRoot).catch((e) => errors.push(`zookeeper: ${(e as Error).message}`));
		if (!keepLogs) fs.rmSync(this.tmp, { recursive: true, force: true });
		return errors;
	}
}

/** Run main with cleanup on success, failure and SIGINT/SIGTERM; prints the JSON result. */
export function runBench(cluster: () => BenchCluster | null, main: () => Promise<unknown>): void {
	let cleaning = false;
	const finish = async (code: number) => {
		if (cleaning) return;
		cleaning = true;
		const c = cluster();
		if (c) {
			const keep = code !== 0 || !!process.env.BENCH_KEEP_LOGS;
			const errors = await c.cleanup(keep).catch((e) => [String(e)]);
			if (errors.length) process.stderr.write(`cleanup: ${errors.join("; ")}\n`);
			if (keep) process.stderr.write(`logs kept in ${c.tmp}\n`);
		}
		process.exit(code);
	};
	for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => void finish(130));
	main().then(
		async (result) => {
			process.stdout.write(JSON.stringify(result, null, 2) + "\n");
			await finish(0);
		},
		async (err) => {
			process.stderr.write(String((err as Error)?.stack ?? err) + "\n");
			await finish(1);
		},
	);
}
