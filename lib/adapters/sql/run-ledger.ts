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
 * - finishRuns updates its runs by primary key, sorted, then its jobs by primary key, sorted: a
 *   worker and the manager (or two workers sharing a job after a failover) meet in the same order
 *   and one simply waits for the other;
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
	 */
	async finishRuns(results: readonly RunResult[]): Promise<{ written: boolean[]; finishedJobs: string[] }> {
		const written: boolean[] = [];
		const finishedJobs: string[] = [];
		// Raw statements: two per run, in one transaction (model.update costs several times more).
		const db = this.db;
		await db.transaction(async (transaction) => {
			// (Reset: a transaction tried again after a lock conflict starts over.)
			written.length = 0;
			written.length = results.length;
			finishedJobs.length = 0;
			const lastByJob = new Map<string, RunResult>();
			// Runs, then jobs, each by primary key (see the file comment); `written` keeps the callers' order.
			const order = results.map((_, i) => i).sort((i, j) => byKey(results[i].runId, results[j].runId));
			for (const i of order) {
				const r = results[i];
				const [, meta] = (await db.query(
					// SIGNAL is a reserved word in MySQL/MariaDB: quoted (SQLite takes backticks too).
					`UPDATE ${this.models.runs.tableName} SET status = ?, exitCode = ?, \`signal\` = ?, output = ?, startedAt = ?, finishedAt = ?, error = ? WHERE id = ? AND status = 'running'`,
					{
						replacements: [r.status, r.exitCode, r.signal, r.output, r.startedAt, r.finishedAt, r.error, r.runId],
						transaction,
						type: QueryTypes.UPDATE,
					},
				)) as unknown as [unknown, number];
				const n = Number(meta ?? 0);
				written[i] = n > 0;
				const prev = lastByJob.get(r.jobId);
				if (n > 0 && (!prev || prev.finishedAt <= r.finishedAt)) lastByJob.set(r.jobId, r);
			}
			for (const [jobId, r] of [...lastByJob].sort((a, b) => byKey(a[0], b[0]))) {
				const lastRun = JSON.stringify({
					id: r.runId,
					status: r.status,
					scheduledAt: iso(r.scheduledAt),
					finishedAt: iso(r.finishedAt),
					exitCode: r.exitCode,
				});
				const status = r.willRetry || r.status === "skipped" ? null : jobStatusAfterRun({ recurring: r.recurring, status: "scheduled" }, r.status, false);
				// A deleted job keeps its status (finished); a pending retry leaves it as it is.
				await db.query(
					`UPDATE ${this.models.jobs.tableName} SET lastRun = ?, updatedAt = ?, status = CASE WHEN deletedAt IS NULL AND ? IS NOT NULL THEN ? ELSE status END WHERE id = ?`,
					{
						replacements: [lastRun, this.clock.now(), status, status, jobId],
						transaction,
						type: QueryTypes.UPDATE,
					},
				);
				if (status === "finished") finishedJobs.push(jobId);
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
