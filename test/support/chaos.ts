/**
 * Backend faults on a cluster of processes, shared by test/integration/chaos.test.ts (which asserts
 * on the reports) and bench/chaos.ts (which prints them).
 *
 * Every backend is a private server of our own (free port, own data), so that a fault never touches
 * the shared servers: ZooKeeper (./zookeeper.ts), MariaDB (./mariadb.ts), NATS (./nats.ts). Each fault
 * runs on a fresh cluster (API+jobs, managers, workers as separate OS processes, dist/bin/cronjob.js)
 * with its own database, ZooKeeper root and Moleculer namespace on those servers, and per-second
 * `run_all` jobs that append "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT <start ms>" to an audit file.
 *
 * A fault's report, once the backend is back and the fires went on past the checked window:
 * - each fire time of the window, per job: its audit lines and its run rows. It ran exactly once when
 *   the audit has it once and its rows end in one `succeeded`; a run cut off by a killed worker may
 *   be `failed` "interrupted" and followed by attempt + 1, and then the audit may have it twice (the
 *   cut-off one may have written its line). A `missed` row (with its reason) stands for a run only
 *   beyond the catch-up bound (DEFAULT_MAX_CATCH_UP), never within it;
 * - the runs left `running`, the nodes that died, /health;
 * - the recovery time: per job, the first fire that started (the job's own clock reading) at or
 *   after the backend's return; the latest of those minus the return. It is the time until EVERY job
 *   fires again, not just the first one (that one is `firstFireMs`).
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEFAULT_MAX_CATCH_UP } from "../../lib/core/policies";
import { startPrivateMariaDb, type PrivateMariaDb } from "./mariadb";
import { startPrivateNats, type PrivateNats } from "./nats";
import { freePort, httpJson, startProcess, type NodeProcess } from "./proc";
import { waitFor } from "./wait";
import { startPrivateZooKeeper, type PrivateZooKeeper } from "./zookeeper";

/** The session timeout the cluster asks ZooKeeper for (the product's default). */
export const SESSION_TIMEOUT_MS = 2000;

export interface ChaosServers {
	zk: PrivateZooKeeper;
	db: PrivateMariaDb;
	nats: PrivateNats;
	/** Databases created on `db` for the cluster's user, one per cluster. */
	databases: string[];
	destroy(): Promise<void>;
}

/** The three private servers, started at once; `clusters` databases are created for the clusters to come. */
export async function startChaosServers(clusters: number): Promise<ChaosServers> {
	const id = randomBytes(4).toString("hex");
	const databases = Array.from({ length: clusters }, (_, i) => `cronjob_chaos_${id}_${i}`);
	const [zk, db, nats] = await Promise.all([startPrivateZooKeeper(), startPrivateMariaDb(databases), startPrivateNats()]);
	return {
		zk,
		db,
		nats,
		databases,
		async destroy() {
			await Promise.all([zk.destroy(), db.stop(), nats.destroy()]);
		},
	};
}

export interface AuditLine {
	/** The fire's scheduled instant (ms). */
	at: number;
	/** When the job's code ran (its own clock, ms). */
	ranAt: number;
}

export interface RunRowLite {
	jobId: string;
	scheduledAt: number;
	attempt: number;
	status: string;
	error: string | null;
	node: string | null;
}

export interface ClusterOptions {
	jobs: number;
	managers: string[];
	workers: string[];
	/** Extra environment for every node. */
	env?: Record<string, string>;
}

export class ChaosCluster {
	readonly id = randomBytes(4).toString("hex");
	readonly token = `chaos-${randomBytes(12).toString("hex")}`;
	readonly procs = new Map<string, NodeProcess>();
	readonly tmp: string;
	readonly audit: string;
	ids: string[] = [];
	base = "";
	private readonly env: Record<string, string>;

	private constructor(
		readonly servers: ChaosServers,
		readonly database: string,
		readonly opts: ClusterOptions,
	) {
		this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `cronjob-chaos-${this.id}-`));
		// The jobs run as `nobody` when the worker is root: they must be able to append to the audit.
		fs.chmodSync(this.tmp, 0o777);
		this.audit = path.join(this.tmp, "audit.log");
		this.env = {
			DATABASE_URL: servers.db.url(database),
			ZOOKEEPER: servers.zk.connectionString,
			ZOOKEEPER_ROOT: `/chaos-${this.id}`,
			ZOOKEEPER_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
			TRANSPORTER: servers.nats.url,
			NAMESPACE: `chaos-${this.id}`,
			CRONJOB_ADMIN_TOKEN: this.token,
			// One key for the cluster's processes (a cluster refuses to start without one).
			CRONJOB_SECRET_KEY: randomBytes(32).toString("hex"),
			LOG_LEVEL: "info",
			...opts.env,
		};
	}

	/** API+jobs first (it creates the tables), then the managers and workers; then the jobs, firing. */
	static async start(servers: ChaosServers, database: string, opts: ClusterOptions): Promise<ChaosCluster> {
		const c = new ChaosCluster(servers, database, opts);
		try {
			await c.boot();
		} catch (err) {
			await c.destroy(true);
			throw err;
		}
		return c;
	}

	private async boot(): Promise<void> {
		const port = await freePort();
		this.base = `http://127.0.0.1:${port}`;
		this.spawn("api-1", { SERVICES: "api,jobs", PORT: String(port) });
		await waitFor(() => this.started("api-1") || this.checkAlive(["api-1"]), 60_000, "the API node", 50);
		for (const m of this.opts.managers) this.spawn(m, { SERVICES: "manager" });
		for (const w of this.opts.workers) this.spawn(w, { SERVICES: "worker" });
		const all = [...this.procs.keys()];
		await waitFor(() => all.every((n) => this.started(n)) || this.checkAlive(all), 60_000, "every node started", 50);
		await waitFor(() => this.leader() !== null, 30_000, "a leading manager", 50);
		await waitFor(
			async () =>
				((await this.api("GET", "/workers")).body as { id: string }[])
					.map((w) => w.id)
					.sort()
					.join() === [...this.opts.workers].sort().join(),
			30_000,
			"the workers registered",
			50,
		);
		for (let i = 0; i < this.opts.jobs; i++) {
			const r = await this.api("POST", "/jobs", {
				type: "command",
				schedule: "* * * * * *",
				misfire: "run_all",
				executable: `echo "$CRONJOB_JOB_ID $CRONJOB_SCHEDULED_AT $(date +%s%3N)" >> ${this.audit}`,
			});
			if (r.status !== 201) throw new Error(`POST /jobs: ${r.status} ${JSON.stringify(r.body)}`);
			this.ids.push((r.body as { id: string }).id);
		}
		await waitFor(() => this.ids.every((id) => (this.audited().get(id)?.length ?? 0) >= 3), 30_000, "every job firing", 100);
	}

	private spawn(name: string, extra: Record<string, string>): void {
		const dataDir = path.join(this.tmp, name);
		fs.mkdirSync(dataDir, { mode: 0o777 });
		fs.chmodSync(dataDir, 0o777);
		this.procs.set(name, startProcess({ ...this.env, NODE_ID: name, CRONJOB_DATA_DIR: dataDir, ...extra }));
	}

	started(name: string): boolean {
		return /distributed-cronjob node \S+ runs/.test(this.procs.get(name)?.log() ?? "");
	}

	alive(name: string): boolean {
		const p = this.procs.get(name);
		return !!p && p.child.exitCode === null && p.child.signalCode === null;
	}

	/** Throws (with the log's tail) when one of these processes exited; false otherwise. */
	checkAlive(names: string[]): false {
		for (const n of names) {
			const p = this.procs.get(n);
			if (p && !this.alive(n)) throw new Error(`${n} exited (code ${p.child.exitCode}, signal ${p.child.signalCode}); log tail:\n${p.log().slice(-4000)}`);
		}
		return false;
	}

	/** The manager that leads now, by the managers' own logs (their last word on leadership). */
	leader(): string | null {
		for (const m of this.opts.managers) {
			if (!this.alive(m)) continue;
			const l = this.procs.get(m)!.log();
			if (l.lastIndexOf("leads the managers") > l.lastIndexOf("lost the leadership")) return m;
		}
		return null;
	}

	/** SIGKILL a node; resolves when it is gone. */
	async kill(name: string): Promise<void> {
		await this.procs.get(name)?.kill("SIGKILL");
	}

	async api(method: string, p: string, body?: unknown): Promise<{ status: number; body: unknown }> {
		return httpJson(`${this.base}${p}`, { method, token: this.token, body });
	}

	/** Audited fires: job id -> its lines, in file order. */
	audited(): Map<string, AuditLine[]> {
		const out = new Map<string, AuditLine[]>();
		if (!fs.existsSync(this.audit)) return out;
		for (const line of fs.readFileSync(this.audit, "utf8").split("\n")) {
			const [id, at, ranAt] = line.split(" ");
			if (!id || !at || !ranAt) continue;
			const list = out.get(id) ?? [];
			list.push({ at: Date.parse(at), ranAt: Number(ranAt) });
			out.set(id, list);
		}
		return out;
	}

	/** Every run row of the cluster's jobs (as root over the server's socket: no pool to go stale across a restart). */
	async runRows(): Promise<RunRowLite[]> {
		const out = await this.servers.db.sql(`SELECT jobId, scheduledAt, attempt, status, IFNULL(error, ''), IFNULL(node, '') FROM \`${this.database}\`.runs`);
		return out
			.split("\n")
			.filter(Boolean)
			.map((line) => {
				const [jobId, scheduledAt, attempt, status, error, node] = line.split("\t");
				return { jobId, scheduledAt: Number(scheduledAt), attempt: Number(attempt), status, error: error || null, node: node || null };
			});
	}

	/** Per job, the node of its latest run (where it runs now). */
	async placement(): Promise<Map<string, string>> {
		const latest = new Map<string, RunRowLite>();
		for (const r of await this.runRows()) {
			const prev = latest.get(r.jobId);
			if (r.node && (!prev || prev.scheduledAt < r.scheduledAt)) latest.set(r.jobId, r);
		}
		return new Map([...latest].map(([id, r]) => [id, r.node as string]));
	}

	/** Kill every node; keep the logs (in the temp folder, named on stderr) or remove the folder. */
	async destroy(keepLogs = false): Promise<void> {
		await Promise.all([...this.procs.values()].map((p) => p.kill("SIGKILL")));
		if (keepLogs || process.env.CHAOS_KEEP_LOGS) {
			for (const [name, p] of this.procs) fs.writeFileSync(path.join(this.tmp, `${name}.log`), p.log());
			process.stderr.write(`chaos: logs of cluster ${this.id} kept in ${this.tmp}\n`);
		} else fs.rmSync(this.tmp, { recursive: true, force: true });
	}
}

/** What a fault did, as its inject() reports it. */
export interface Injected {
	/** The backend went down (ms). */
	downAt: number;
	/** It answered again (ms). */
	upAt: number;
	/** Nodes the fault killed (not expected alive). */
	killed: string[];
	/** Anything worth printing (e.g. which manager led and which leads now). */
	notes?: Record<string, unknown>;
}

export interface Fault {
	name: string;
	/** Break the backend and bring it back; the cluster fires meanwhile. */
	inject(c: ChaosCluster): Promise<Injected>;
}

export interface FaultReport {
	fault: string;
	downMs: number;
	/** Until every job fired again, after the return (ms). */
	recoveryMs: number;
	/** Until the first job fired again (ms). */
	firstFireMs: number;
	/** The same, of the jobs that ran on a killed worker before the fault (they moved), and of the others. */
	movedRecoveryMs: number | null;
	stayedRecoveryMs: number | null;
	jobs: number;
	fireTimesChecked: number;
	/** Fire times of the window (job and ISO time) with no run. */
	missing: string[];
	/** Fire times that ran more than once (beyond a cut-off run's allowed second line). */
	doubled: string[];
	/** Fire times whose run rows are not one final row (or a cut-off one then one final row). */
	badRows: string[];
	/** Fire times cut off by a kill and run again (attempt + 1). */
	interrupted: number;
	leftRunning: number;
	/** Nodes not killed by the fault that are dead. */
	dead: string[];
	healthStatus: number;
	notes?: Record<string, unknown>;
}

/** Wait until it is `ms` past a whole second (faults start where the workers claim the next second's fires). */
export async function atSecond(ms = 5): Promise<number> {
	await waitFor(() => Date.now() % 1000 >= ms && Date.now() % 1000 < ms + 20, 2000, "the start of a second", 1);
	return Date.now();
}

/** Resolve once `ms` have passed since `since` (a deadline-bounded wait, for the length of an outage). */
export async function elapsed(since: number, ms: number): Promise<void> {
	await waitFor(() => Date.now() - since >= ms, ms + 5000, `${ms} ms since the fault`, 10);
}

/** Inject the fault on a running cluster and report what it did to the fires. */
export async function runFault(c: ChaosCluster, fault: Fault): Promise<FaultReport> {
	const ids = c.ids;
	const before = await c.placement();
	const { downAt, upAt, killed, notes } = await fault.inject(c);
	// Recovery: per job, the first fire that ran at or after the return.
	const firstAfter = await waitFor(
		() => {
			const seen = c.audited();
			const out = new Map<string, number>();
			for (const id of ids) {
				const t = (seen.get(id) ?? []).map((l) => l.ranAt).filter((x) => x >= upAt);
				if (t.length === 0) return null;
				out.set(id, Math.min(...t));
			}
			return out;
		},
		30_000,
		`every job firing after the return (${fault.name})`,
		50,
	);
	const moved = ids.filter((id) => killed.includes(before.get(id) ?? ""));
	const stayed = ids.filter((id) => !moved.includes(id));
	const latest = (of: string[]) => (of.length === 0 ? null : Math.max(...of.map((id) => firstAfter.get(id)!)) - upAt);
	// The checked window: from 2 s before the fault to 2 s after the return; wait for fires past it.
	const from = Math.ceil((downAt - 2000) / 1000) * 1000;
	const to = upAt + 2000;
	await waitFor(() => ids.every((id) => (c.audited().get(id) ?? []).some((l) => l.at >= to + 1000)), 30_000, "fires past the checked window", 100);
	// Nothing left running (a fire in flight right now aside).
	const stuck = async () => (await c.runRows()).filter((r) => r.status === "running" && r.scheduledAt < Date.now() - 5000).length;
	await waitFor(async () => (await stuck()) === 0, 20_000, "no run left running", 250).catch(() => undefined);
	const leftRunning = await stuck();
	const seen = c.audited();
	const rows = await c.runRows();
	const rowsOf = new Map<string, RunRowLite[]>();
	for (const r of rows) {
		const k = `${r.jobId} ${r.scheduledAt}`;
		rowsOf.set(k, [...(rowsOf.get(k) ?? []), r]);
	}
	const missing: string[] = [];
	const doubled: string[] = [];
	const badRows: string[] = [];
	let interrupted = 0;
	let checked = 0;
	const outageFires = Math.floor((upAt - downAt) / 1000) + 1;
	for (const id of ids) {
		const lines = seen.get(id) ?? [];
		for (let t = from; t <= to; t += 1000) {
			checked++;
			const name = `${id} ${new Date(t).toISOString()}`;
			const ran = lines.filter((l) => l.at === t).length;
			const fire = (rowsOf.get(`${id} ${t}`) ?? []).sort((a, b) => a.attempt - b.attempt);
			const last = fire[fire.length - 1];
			// Every row but the last: a run cut off by a kill ("interrupted"), each followed by attempt + 1.
			const cutOff = fire.slice(0, -1);
			const wellFormed =
				!!last &&
				last.status !== "running" &&
				fire.every((r, i) => r.attempt === i + 1) &&
				cutOff.every((r) => r.status === "failed" && /^interrupted/.test(r.error ?? ""));
			if (!wellFormed) badRows.push(`${name}: ${fire.map((r) => `${r.attempt}:${r.status}${r.error ? ` (${r.error})` : ""}`).join(", ") || "no row"}`);
			if (cutOff.length > 0) interrupted++;
			const missedByBound = last?.status === "missed" && !!last.error && outageFires > DEFAULT_MAX_CATCH_UP;
			if (ran === 0 && !missedByBound) missing.push(name);
			if (ran > 1 + cutOff.length) doubled.push(name);
			if (last && last.status !== "succeeded" && !missedByBound && wellFormed) badRows.push(`${name}: ended ${last.status} ${last.error ?? ""}`);
		}
	}
	const dead = [...c.procs.keys()].filter((n) => !killed.includes(n) && !c.alive(n));
	let healthStatus = 0;
	await waitFor(
		async () => (healthStatus = (await httpJson(`${c.base}/health`).catch(() => ({ status: 0 }))).status) === 200,
		20_000,
		"/health 200",
		200,
	).catch(() => undefined);
	const recoveryMs = latest(ids) as number;
	return {
		fault: fault.name,
		downMs: upAt - downAt,
		recoveryMs,
		firstFireMs: Math.min(...ids.map((id) => firstAfter.get(id)!)) - upAt,
		movedRecoveryMs: killed.length > 0 ? latest(moved) : null,
		stayedRecoveryMs: killed.length > 0 ? latest(stayed) : null,
		jobs: ids.length,
		fireTimesChecked: checked,
		missing,
		doubled,
		badRows,
		interrupted,
		leftRunning,
		dead,
		healthStatus,
		notes,
	};
}

export type FaultKey = "zookeeper" | "mariadb" | "nats" | "zookeeperAndMariadb" | "workerKilledZookeeperDown" | "leaderKilledNatsDown";

/** The faults, in the order of the issue. */
export function faults(servers: ChaosServers): Record<FaultKey, Fault> {
	const { zk, db, nats } = servers;
	return {
		zookeeper: {
			name: "zookeeper stopped past the session timeout",
			async inject() {
				const downAt = await atSecond();
				await zk.stop();
				await elapsed(downAt, 2 * SESSION_TIMEOUT_MS);
				await zk.start();
				return { downAt, upAt: Date.now(), killed: [] };
			},
		},
		mariadb: {
			name: "mariadb killed (SIGKILL), restarted after 2 s",
			async inject() {
				const downAt = await atSecond();
				await db.kill("SIGKILL");
				await elapsed(downAt, 2000);
				await db.start();
				return { downAt, upAt: Date.now(), killed: [] };
			},
		},
		nats: {
			name: "nats stopped for 3 s",
			async inject() {
				const downAt = await atSecond();
				await nats.stop();
				await elapsed(downAt, 3000);
				await nats.start();
				return { downAt, upAt: Date.now(), killed: [] };
			},
		},
		zookeeperAndMariadb: {
			name: "zookeeper and mariadb down together",
			async inject() {
				const downAt = await atSecond();
				await Promise.all([zk.stop(), db.kill("SIGKILL")]);
				await elapsed(downAt, 2 * SESSION_TIMEOUT_MS);
				await Promise.all([zk.start(), db.start()]);
				return { downAt, upAt: Date.now(), killed: [] };
			},
		},
		workerKilledZookeeperDown: {
			name: "a worker killed while zookeeper is down",
			async inject(c) {
				const victim = c.opts.workers[c.opts.workers.length - 1];
				// 300 ms into a second: the next second's fires are claimed, recorded and held (prefire)
				// by then; the kill 300 ms later cuts them off before their instant.
				const downAt = await atSecond(300);
				await zk.stop();
				await elapsed(downAt, 300);
				await c.kill(victim);
				await elapsed(downAt, 2 * SESSION_TIMEOUT_MS);
				await zk.start();
				return { downAt, upAt: Date.now(), killed: [victim] };
			},
		},
		leaderKilledNatsDown: {
			name: "the leading manager killed while nats is down",
			async inject(c) {
				const leader = c.leader();
				if (!leader) throw new Error("no leading manager before the fault");
				const downAt = await atSecond();
				await nats.stop();
				await elapsed(downAt, 1000);
				await c.kill(leader);
				await elapsed(downAt, 3000);
				await nats.start();
				const upAt = Date.now();
				// The other manager takes over (through ZooKeeper, which stayed up).
				await waitFor(() => c.leader() !== null, 20_000, "a new leading manager", 50).catch(() => undefined);
				return { downAt, upAt, killed: [leader], notes: { killedLeader: leader, newLeader: c.leader() } };
			},
		},
	};
}
