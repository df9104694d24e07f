/**
 * The run ledger: the `runs` table (one row per fire and attempt) and what a run's end writes to its
 * job (lastRun, status). The worker records through it (start, end, skipped or missed fires), the
 * manager's recovery finds and closes runs cut off by a dead worker, and the catch-up baseline of a
 * job is read from it. The caller wraps each call (connection errors, SQLite's one-at-a-time lock,
 * lock conflicts tried again: mixins/db.mixin.ts guard).
 *
 * Why the writers cannot deadlock on MySQL/MariaDB (InnoDB). Several processes write at once: every
 * worker's run starts and ends, the manager's display writes (jobs.worker), the API's job writes.
 * A deadlock needs two transactions that each hold a lock the other waits for, so every transaction
 * here takes its row locks in ONE global order: runs before jobs, and within a table by primary key
 * (ascending), the order in which InnoDB's own range and IN-list updates lock (the manager's
 * `UPDATE jobs SET worker ... WHERE id IN (...)`, one statement per chunk):
 * - startRuns inserts its rows sorted by the unique key (jobId, scheduledAt, attempt) and locks no
 *   job; an insert that meets a duplicate (a fire that already ran) takes a shared lock on that key
 *   only, in the same order;
 * - finishRuns locks its runs by primary key, sorted (SELECT ... FOR UPDATE over an ascending
 *   IN list, then one UPDATE of those rows), then updates its jobs by primary key, sorted (one
 *   UPDATE over an IN list): a worker and the manager (or two workers sharing a job after a
 *   failover) meet in the same order and one simply waits for the other;
 * - recordRuns inserts its rows sorted by the unique key, as startRuns; abandonRun is a single-row
 *   statement.
 * Should the server still report a deadlock or a lock wait timeout (another client of the same
 * database, a plan that locks more than expected), the whole transaction was rolled back and the
 * guard runs it again: a conflict delays a write, it never loses one.
 */
import { randomUUID } from "node:crypto";
import { Op, QueryTypes, col, fn, type Sequelize } from "sequelize";
import type { Clock } from "../../core/clock";
import { jobStatusAfterRun } from "../../core/policies";
import type { InflightRun, RunRecord, RunResult, RunStart } from "../../core/types";
import { iso, type JobRow, type RunRow } from "../../core/views";
import type { JobsModels } from "./models";

/** Primary keys in the order InnoDB locks them (ascending bytes: our ids are ASCII). */
function byKey(a: string, b: string): number {
	return a < b ? -1 : a > b ? 1 : 0;
}

/** Job ids per IN (...) list. */
const CHUNK = 1000;
/** Runs per finishing statement, and their output per statement (MySQL's max_allowed_packet is 16 MiB by default). */
const FINISH_CHUNK = 200;
const FINISH_CHUNK_BYTES = 1 << 20;

/** `keys` (in their order) in runs of at most FINISH_CHUNK and, but for a single key, FINISH_CHUNK_BYTES of `size`. */
function* chunks(keys: readonly string[], size: (key: string) => number): Generator<string[]> {
	let chunk: string[] = [];
	let bytes = 0;
	for (const key of keys) {
		const n = size(key);
		if (chunk.length > 0 && (chunk.length >= FINISH_CHUNK || bytes + n > FINISH_CHUNK_BYTES)) {
			yield chunk;
			chunk = [];
			bytes = 0;
		}
		chunk.push(key);
		bytes += n;
	}
	if (chunk.length > 0) yield chunk;
}

/**
 * `UPDATE table SET col = CASE id WHEN ? THEN ? ... END, ... WHERE id IN (...)`: each row's own
 * values in one statement, on SQLite and MySQL/MariaDB alike.
 */
function caseUpdate<T>(
	table: string,
	columns: [string, (row: T) => unknown][],
	rows: readonly T[],
	idOf: (row: T) => string,
): { sql: string; replacements: unknown[] } {
	const replacements: unknown[] = [];
	const sets = columns.map(([name, value]) => {
		for (const row of rows) replacements.push(idOf(row), value(row));
		return `${name} = CASE id ${rows.map(() => "WHEN ? THEN ?").join(" ")} END`;
	});
	for (const row of rows) replacements.push(idOf(row));
	return { sql: `UPDATE ${table} SET ${sets.join(", ")} WHERE id IN (${rows.map(() => "?").join(", ")})`, replacements };
}

export class RunLedger {
	constructor(
		private readonly db: Sequelize,
		private readonly models: JobsModels,
		private readonly clock: Clock,
	) {}

	/**
	 * Record the start of runs, in one transaction. Answers, for each, its row or null when (job,
	 * scheduledAt, attempt) already has a run (the unique key: a fire runs once).
	 */
	async startRuns(starts: readonly RunStart[]): Promise<(RunRow | null)[]> {
		const rows: RunRow[] = starts.map((p) => ({
			id: randomUUID(),
			jobId: p.jobId,
			scheduledAt: p.scheduledAt,
			attempt: p.attempt,
			trigger: p.trigger,
			status: "running",
			startedAt: null,
			finishedAt: null,
			exitCode: null,
			signal: null,
			output: "",
			node: p.node,
			error: null,
		}));
		const ids = rows.map((r) => r.id);
		const runs = this.models.runs;
		// In the unique key's order (see the file comment); the answer keeps the callers' order.
		const inserts = [...rows].sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : a.scheduledAt - b.scheduledAt || a.attempt - b.attempt));
		const present = await this.db.transaction(async (transaction) => {
			await runs.bulkCreate(inserts as never[], { ignoreDuplicates: true, transaction });
			const found = (await runs.findAll({ attributes: ["id"], where: { id: ids }, raw: true, transaction })) as unknown as { id: string }[];
			return new Set(found.map((r) => r.id));
		});
		return rows.map((r) => (present.has(r.id) ? r : null));
	}

	/**
	 * Record fires that did not run (skipped, missed), in one statement. A fire that already has a
	 * run keeps it (the unique key).
	 */
	async recordRuns(records: readonly RunRecord[]): Promise<void> {
		const now = this.clock.now();
		const rows: RunRow[] = records.map((p) => ({
			id: randomUUID(),
			jobId: p.jobId,
			scheduledAt: p.scheduledAt,
			attempt: 1,
			trigger: p.trigger,
			status: p.status,
			startedAt: null,
			finishedAt: now,
			exitCode: null,
			signal: null,
			output: "",
			node: p.node,
			error: p.error ?? null,
		}));
		// In the unique key's order (see the file comment).
		rows.sort((a, b) => (a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : a.scheduledAt - b.scheduledAt));
		await this.models.runs.bulkCreate(rows as never[], { ignoreDuplicates: true });
	}

	/**
	 * Record the end of runs and move their jobs' status, in one transaction. Idempotent: a run
	 * already final is left alone. Answers, for each, whether it was written now, and the jobs
	 * that finished.
	 *
	 * A few statements per chunk of runs, not two per run (the single-node default records several
	 * hundred ends a second, and a statement's cost is mostly its round through the ORM): which of
	 * the runs are still running (locked, on MySQL/MariaDB, so that what is written is what was
	 * read), those runs updated in one statement, their jobs in one more.
	 */
	async finishRuns(results: readonly RunResult[]): Promise<{ written: boolean[]; finishedJobs: string[] }> {
		const written: boolean[] = [];
		const finishedJobs: string[] = [];
		const db = this.db;
		// SQLite has no row locks: a write transaction has the whole database. On MySQL/MariaDB every
		// statement here reads its rows by primary key, never by a scan (which the server picks for
		// an IN list over much of a small table, and which locks every row it passes: a second pass
		// over the runs, after the SELECT's, would then take rows below ones it holds, against the
		// one order).
		const sqlite = db.getDialect() === "sqlite";
		const lock = sqlite ? "" : " FOR UPDATE";
		const byPk = sqlite ? "" : " FORCE INDEX (PRIMARY)";
		const runsTable = this.models.runs.tableName + byPk;
		const jobsTable = this.models.jobs.tableName + byPk;
		// One result per run (the first; a repeat of it is not written again), by primary key.
		const firstOf = new Map<string, number>();
		results.forEach((r, i) => {
			if (!firstOf.has(r.runId)) firstOf.set(r.runId, i);
		});
		const runIds = [...firstOf.keys()].sort(byKey);
		await db.transaction(async (transaction) => {
			// (Reset: a transaction tried again after a lock conflict starts over.)
			written.length = 0;
			written.length = results.length;
			written.fill(false);
			finishedJobs.length = 0;
			const lastByJob = new Map<string, RunResult>();
			// Runs, then jobs, each by primary key (see the file comment).
			for (const ids of chunks(runIds, (id) => results[firstOf.get(id) as number].output.length)) {
				const marks = ids.map(() => "?").join(", ");
				// By primary key alone (the status tested here, not in the statement: a condition on
				// the status could lead the server to the status index and its next-key locks).
				const rows = await db.query<{ id: string; status: string }>(`SELECT id, status FROM ${runsTable} WHERE id IN (${marks}) ORDER BY id${lock}`, {
					replacements: ids,
					transaction,
					type: QueryTypes.SELECT,
				});
				const running = rows.filter((r) => r.status === "running");
				if (running.length === 0) continue;
				const open = running.map((r) => results[firstOf.get(r.id) as number]);
				// SIGNAL is a reserved word in MySQL/MariaDB: quoted (SQLite takes backticks too).
				const columns: [string, (r: RunResult) => unknown][] = [
					["status", (r) => r.status],
					["exitCode", (r) => r.exitCode],
					["`signal`", (r) => r.signal],
					["output", (r) => r.output],
					["startedAt", (r) => r.startedAt],
					["finishedAt", (r) => r.finishedAt],
					["error", (r) => r.error],
				];
				const { sql, replacements } = caseUpdate(runsTable, columns, open, (r) => r.runId);
				// These rows are locked (MySQL/MariaDB) or the database is this transaction's (SQLite): still running.
				await db.query(sql, { replacements, transaction, type: QueryTypes.UPDATE });
				for (const r of open) {
					written[firstOf.get(r.runId) as number] = true;
					const prev = lastByJob.get(r.jobId);
					if (!prev || prev.finishedAt <= r.finishedAt) lastByJob.set(r.jobId, r);
				}
			}
			const jobIds = [...lastByJob.keys()].sort(byKey);
			for (const ids of chunks(jobIds, () => 0)) {
				const ends = ids.map((id) => {
					const r = lastByJob.get(id) as RunResult;
					const lastRun = JSON.stringify({
						id: r.runId,
						status: r.status,
						scheduledAt: iso(r.scheduledAt),
						finishedAt: iso(r.finishedAt),
						exitCode: r.exitCode,
					});
					const status = r.willRetry || r.status === "skipped" ? null : jobStatusAfterRun({ recurring: r.recurring, status: "scheduled" }, r.status, false);
					if (status === "finished") finishedJobs.push(id);
					return { id, lastRun, status };
				});
				// A deleted job keeps its status (finished); a pending retry (status null) leaves it as it is.
				const lastRun = ends.map(() => "WHEN ? THEN ?").join(" ");
				const status = ends.map(() => "WHEN ? THEN ?").join(" ");
				await db.query(
					`UPDATE ${jobsTable} SET lastRun = CASE id ${lastRun} END, updatedAt = ?, ` +
						`status = CASE WHEN deletedAt IS NULL THEN COALESCE(CASE id ${status} END, status) ELSE status END ` +
						`WHERE id IN (${ends.map(() => "?").join(", ")})`,
					{
						replacements: [...ends.flatMap((e) => [e.id, e.lastRun]), this.clock.now(), ...ends.flatMap((e) => [e.id, e.status]), ...ends.map((e) => e.id)],
						transaction,
						type: QueryTypes.UPDATE,
					},
				);
			}
		});
		return { written, finishedJobs };
	}

	/** Runs still marked running for these jobs (to find runs cut off by a dead worker). */
	async inflight(jobIds: readonly string[]): Promise<InflightRun[]> {
		const runs = this.models.runs;
		let rows: RunRow[];
		if (jobIds.length > CHUNK) {
			// A large set (a dead worker's share): one query for every running run (few, by the
			// status index), filtered here, instead of one query per thousand jobs.
			const wanted = new Set(jobIds);
			const all = (await runs.findAll({ where: { status: "running" }, raw: true })) as unknown as RunRow[];
			rows = all.filter((r) => wanted.has(r.jobId));
		} else {
			rows = (await runs.findAll({ where: { status: "running", jobId: [...jobIds] }, raw: true })) as unknown as RunRow[];
		}
		return rows.map((r) => ({ id: r.id, jobId: r.jobId, scheduledAt: Number(r.scheduledAt), attempt: r.attempt, trigger: r.trigger, node: r.node }));
	}

	/** Mark a run cut off by a dead worker failed; false when it is no longer running. */
	async abandonRun(runId: string, error: string): Promise<boolean> {
		const [n] = await this.models.runs.update({ status: "failed", finishedAt: this.clock.now(), error }, { where: { id: runId, status: "running" } });
		return n > 0;
	}

	/**
	 * The catch-up baseline of these jobs (at most CHUNK): the later of the newest handled fire (run,
	 * skipped or missed; manual runs aside), derived from the runs, and the one a schedule change set
	 * (lastScheduledAt, which this raises in place).
	 */
	async applyCatchUpBaselines(rows: JobRow[]): Promise<void> {
		if (rows.length === 0) return;
		const latest = (await this.models.runs.findAll({
			attributes: ["jobId", [fn("MAX", col("scheduledAt")), "latest"]],
			where: { jobId: rows.map((r) => r.id), trigger: { [Op.ne]: "manual" } },
			group: ["jobId"],
			raw: true,
		})) as unknown as { jobId: string; latest: number | string }[];
		const byJob = new Map(latest.map((l) => [l.jobId, Number(l.latest)]));
		for (const row of rows) {
			const handled = byJob.get(row.id);
			if (handled !== undefined) row.lastScheduledAt = Math.max(Number(row.lastScheduledAt ?? 0), handled);
		}
	}

	/** A job's runs, newest fire first. */
	async runsOf(jobId: string, page: { limit: number; offset: number }): Promise<RunRow[]> {
		const rows = await this.models.runs.findAll({
			where: { jobId },
			order: [
				["scheduledAt", "DESC"],
				["attempt", "DESC"],
			],
			limit: page.limit,
			offset: page.offset,
			raw: true,
		});
		return rows as unknown as RunRow[];
	}
}
