/**
 * jobs: persists jobs and their runs (moleculer-db + sequelize; SQLite on the embedded default,
 * MySQL/MariaDB with DATABASE_URL). Owns the `jobs` and `runs` tables. REST-facing actions take the
 * caller from ctx.meta.user; the worker and manager use the internal ones over the broker.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Op, QueryTypes, col, fn, type ModelStatic, type Model } from "sequelize";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { isUniqueViolation, syncModel } from "../lib/adapters/sql/db";
import { conflict, invalidField, notFound, unauthorized, unavailable } from "../lib/core/errors";
import { Executables } from "../lib/adapters/executables";
import { type ObjectStore } from "../lib/adapters/object-store";
import { jobStatusAfterRun } from "../lib/core/policies";
import { nextFireTimes, validateTimezone, parseSchedule } from "../lib/core/schedule";
import type { AuthUser, RunResult, RunStatus, RunTrigger } from "../lib/core/types";
import { validateJobCreate, validateJobPatch } from "../lib/core/validation";
import { iso, jobRowChanges, jobView, newJobRow, runView, workerJobView, type JobRow, type RunRow } from "../lib/core/views";
import { SETTABLE_FIELDS } from "../lib/core/job-schema";
import { defineRunModel, jobModel } from "../lib/adapters/sql/models";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";
import { DbMixin, type DbMixinHost } from "../mixins/db.mixin";

export interface JobsDeps {
	config: Config;
	clock: Clock;
	objectStore: ObjectStore;
}

type Meta = { user?: AuthUser; $statusCode?: number; $location?: string; $responseType?: string; $responseHeaders?: Record<string, string> };
type Ctx<P = Record<string, unknown>> = Context<P, Meta>;

interface JobsThis extends DbMixinHost {
	runs: ModelStatic<Model>;
	requireUser(ctx: Ctx<unknown>): AuthUser;
	findOwned(ctx: Ctx<unknown>, id: string): Promise<JobRow>;
	changed(id: string, op: string): void;
}

/** Fields a user may send (the schema's settable ones); lib/core/validation checks and types them. */
const JOB_PARAMS = {
	...Object.fromEntries(SETTABLE_FIELDS.map((f) => [f, { type: "any", optional: true }])),
	$$strict: false,
};

const ID = { type: "string", min: 1, max: 64 };

export default function createJobsService(deps: JobsDeps): ServiceSchema<ServiceSettingSchema, JobsThis> {
	const { config, clock } = deps;
	const executables = new Executables(deps.objectStore, config.maxUploadBytes);
	return {
		name: "jobs",
		mixins: [
			DbMixin<JobsThis>({
				config,
				owner: "jobs",
				model: jobModel,
				// Workers record runs in parallel batches: on SQLite one at a time (see DbMixinOptions).
				serializeSqlite: true,
				async afterConnected(this: JobsThis) {
					this.runs = defineRunModel(this.adapter.db);
					// Safe when several processes start at once (a lost table/index race is retried).
					await syncModel(this.runs);
				},
			}),
			ErrorsMixin(),
		],
		settings: { idField: "id" },

		actions: {
			// ---- REST-facing ----
			createJob: {
				params: JOB_PARAMS,
				async handler(this: JobsThis, ctx: Ctx) {
					const user = this.requireUser(ctx);
					const body = { ...ctx.params };
					let input;
					try {
						input = validateJobCreate(body, { admin: user.admin, userRunAs: config.userRunAs });
					} catch (err) {
						throw err;
					}
					const stored = await executables.save(input.type, input.executable);
					const now = clock.now();
					const row = newJobRow(input, { id: randomUUID(), owner: user.id, createdAt: now, updatedAt: now, ...stored });
					await this.guard(() => this.adapter.model.create(row as never));
					this.changed(row.id, "created");
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/jobs/${row.id}`;
					return jobView(row, clock.now());
				},
			},

			listJobs: {
				params: {
					status: { type: "enum", values: ["scheduled", "finished", "error"], optional: true },
					limit: { type: "number", integer: true, min: 1, max: 1000, optional: true, convert: true },
					offset: { type: "number", integer: true, min: 0, optional: true, convert: true },
				},
				async handler(this: JobsThis, ctx: Ctx<{ status?: string; limit?: number; offset?: number }>) {
					const user = this.requireUser(ctx);
					const where: Record<string, unknown> = {};
					if (!user.admin) where.owner = user.id;
					if (ctx.params.status) where.status = ctx.params.status;
					const rows = await this.guard(() =>
						this.adapter.model.findAll({
							where,
							order: [
								["createdAt", "DESC"],
								["id", "ASC"],
							],
							limit: ctx.params.limit ?? 100,
							offset: ctx.params.offset ?? 0,
							raw: true,
						}),
					);
					return (rows as unknown as JobRow[]).map((r) => jobView(r, clock.now()));
				},
			},

			getJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					return jobView(await this.findOwned(ctx, ctx.params.id), clock.now());
				},
			},

			updateJob: {
				params: { id: ID, ...JOB_PARAMS },
				async handler(this: JobsThis, ctx: Ctx<{ id: string } & Record<string, unknown>>) {
					const user = this.requireUser(ctx);
					const { id, ...body } = ctx.params;
					const job = await this.findOwned(ctx, id);
					if (job.deletedAt !== null) throw conflict("The job was deleted", "id");
					let patch;
					try {
						patch = validateJobPatch(body, { admin: user.admin, currentType: job.type, userRunAs: config.userRunAs });
					} catch (err) {
						throw err;
					}
					const now = clock.now();
					const changes: Partial<JobRow> = { ...jobRowChanges(patch), updatedAt: now };
					const type = patch.type ?? job.type;
					if (patch.executable !== undefined) {
						const stored = await executables.save(type, patch.executable);
						Object.assign(changes, { type, ...stored });
					}
					// Fire times before a change of schedule, time zone or suspension were never missed:
					// the worker catches up only what passed after this moment.
					if (patch.schedule !== undefined || patch.timezone !== undefined || patch.suspended === false) {
						changes.lastScheduledAt = Math.max(job.lastScheduledAt ?? 0, now);
					}
					await this.guard(() => this.adapter.model.update(changes, { where: { id } }));
					this.changed(id, "updated");
					return jobView({ ...job, ...changes } as JobRow, clock.now());
				},
			},

			removeJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					const job = await this.findOwned(ctx, ctx.params.id);
					const now = clock.now();
					const changes: Partial<JobRow> = { status: "finished", deletedAt: job.deletedAt ?? now, worker: null, updatedAt: now };
					await this.guard(() => this.adapter.model.update(changes, { where: { id: job.id } }));
					this.changed(job.id, "removed");
					return jobView({ ...job, ...changes } as JobRow, clock.now());
				},
			},

			triggerJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					const job = await this.findOwned(ctx, ctx.params.id);
					if (job.deletedAt !== null) throw conflict("The job was deleted", "id");
					const opts = job.worker && this.broker.registry.nodes.get(job.worker)?.available ? { nodeID: job.worker } : {};
					try {
						const run = await ctx.call("worker.runNow", { jobId: job.id }, opts);
						ctx.meta.$statusCode = 202;
						return run;
					} catch (err) {
						const e = err as { name?: string; code?: number };
						if (e.name === "ServiceNotFoundError" || e.name === "ServiceNotAvailableError") throw unavailable("worker", "no live worker");
						throw err;
					}
				},
			},

			jobRuns: {
				params: {
					id: ID,
					limit: { type: "number", integer: true, min: 1, max: 1000, optional: true, convert: true },
					offset: { type: "number", integer: true, min: 0, optional: true, convert: true },
				},
				async handler(this: JobsThis, ctx: Ctx<{ id: string; limit?: number; offset?: number }>) {
					const job = await this.findOwned(ctx, ctx.params.id);
					const rows = await this.guard(() =>
						this.runs.findAll({
							where: { jobId: job.id },
							order: [
								["scheduledAt", "DESC"],
								["attempt", "DESC"],
							],
							limit: ctx.params.limit ?? 100,
							offset: ctx.params.offset ?? 0,
							raw: true,
						}),
					);
					return (rows as unknown as RunRow[]).map(runView);
				},
			},

			jobExecutable: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>): Promise<Readable> {
					const job = await this.findOwned(ctx, ctx.params.id);
					if (!job.digest) throw invalidField("id", "Only script and binary jobs have a stored executable");
					const stream = await executables.open(job.digest);
					ctx.meta.$responseType = "application/octet-stream";
					ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="${job.id}"`, "X-Content-SHA256": job.digest };
					return stream;
				},
			},

			preview: {
				params: {
					schedule: { type: "any" },
					timezone: { type: "any", optional: true },
					from: { type: "any", optional: true },
					count: { type: "any", optional: true },
				},
				handler(this: JobsThis, ctx: Ctx<{ schedule: unknown; timezone?: unknown; from?: unknown; count?: unknown }>) {
					this.requireUser(ctx);
					const { schedule, timezone, from, count } = ctx.params;
					if (typeof schedule !== "string") throw invalidField("schedule", "schedule is required");
					const tz = timezone === undefined ? "UTC" : String(timezone);
					let fromMs = clock.now();
					if (from !== undefined) {
						fromMs = Date.parse(String(from));
						if (!Number.isFinite(fromMs)) throw invalidField("from", "from must be an ISO 8601 instant");
					}
					const n = count === undefined ? 10 : Number(count);
					if (!Number.isInteger(n) || n < 1 || n > 100) throw invalidField("count", "count must be an integer from 1 to 100");
					parseSchedule(schedule);
					// The zone as a job would store it ("utc" -> "UTC").
					const zone = validateTimezone(tz);
					return { schedule, timezone: zone, next: nextFireTimes(schedule, zone, fromMs, n).map((t) => iso(t)) };
				},
			},

			// ---- internal (worker, manager) ----
			/**
			 * Ids of the jobs to assign. With `limit`, one page in id order after `after` (keyset paging):
			 * an answer must stay under the transporter's packet limit (NATS: 1 MB by default).
			 */
			schedulable: {
				visibility: "public",
				params: { after: { type: "string", optional: true }, limit: { type: "number", integer: true, min: 1, optional: true } },
				async handler(this: JobsThis, ctx: Ctx<{ after?: string; limit?: number }>) {
					const where: Record<string | symbol, unknown> = { deletedAt: null, suspended: false, status: { [Op.ne]: "finished" } };
					if (ctx.params.after !== undefined) where.id = { [Op.gt]: ctx.params.after };
					const paging = ctx.params.limit !== undefined ? { order: [["id", "ASC"]] as [string, string][], limit: ctx.params.limit } : {};
					const rows = await this.guard(() => this.adapter.model.findAll({ attributes: ["id"], where, raw: true, ...paging }));
					return (rows as unknown as { id: string }[]).map((r) => r.id);
				},
			},

			byIds: {
				visibility: "public",
				params: { ids: { type: "array", items: "string" } },
				async handler(this: JobsThis, ctx: Ctx<{ ids: string[] }>) {
					const out = [];
					for (let i = 0; i < ctx.params.ids.length; i += 1000) {
						const chunk = ctx.params.ids.slice(i, i + 1000);
						const rows = (await this.guard(() => this.adapter.model.findAll({ where: { id: chunk }, raw: true }))) as unknown as JobRow[];
						// The newest handled fire (run, skipped or missed) is derived from the runs: the
						// catch-up baseline is the later of it and the one set by a schedule change.
						const latest = (await this.guard(() =>
							this.runs.findAll({
								attributes: ["jobId", [fn("MAX", col("scheduledAt")), "latest"]],
								where: { jobId: chunk, trigger: { [Op.ne]: "manual" } },
								group: ["jobId"],
								raw: true,
							}),
						)) as unknown as { jobId: string; latest: number | string }[];
						const byJob = new Map(latest.map((l) => [l.jobId, Number(l.latest)]));
						for (const row of rows) {
							const handled = byJob.get(row.id);
							if (handled !== undefined) row.lastScheduledAt = Math.max(Number(row.lastScheduledAt ?? 0), handled);
						}
						out.push(...rows.map(workerJobView));
					}
					return out;
				},
			},

			setWorkers: {
				visibility: "public",
				params: { moves: { type: "array", items: { type: "object", props: { jobId: "string", to: { type: "string", nullable: true } } } } },
				async handler(this: JobsThis, ctx: Ctx<{ moves: { jobId: string; to: string | null }[] }>) {
					const byWorker = new Map<string | null, string[]>();
					for (const m of ctx.params.moves) {
						const list = byWorker.get(m.to) ?? [];
						list.push(m.jobId);
						byWorker.set(m.to, list);
					}
					for (const [worker, ids] of byWorker) {
						for (let i = 0; i < ids.length; i += 1000) {
							await this.guard(() => this.adapter.model.update({ worker }, { where: { id: ids.slice(i, i + 1000) } }));
						}
					}
					return ctx.params.moves.length;
				},
			},

			/**
			 * Record the start of runs, in one transaction. Answers, for each, the run or null when
			 * (job, scheduledAt, attempt) already has a run (the unique key: a fire runs once).
			 */
			startRuns: {
				visibility: "public",
				params: {
					runs: {
						type: "array",
						items: {
							type: "object",
							props: {
								jobId: "string",
								scheduledAt: "number",
								attempt: { type: "number", integer: true, min: 1 },
								trigger: { type: "enum", values: ["schedule", "manual", "retry", "catchup"] },
								node: "string",
							},
						},
					},
				},
				async handler(this: JobsThis, ctx: Ctx<{ runs: { jobId: string; scheduledAt: number; attempt: number; trigger: RunTrigger; node: string }[] }>) {
					const rows: RunRow[] = ctx.params.runs.map((p) => ({
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
					const present = await this.guard(() =>
						this.adapter.db.transaction(async (transaction) => {
							await this.runs.bulkCreate(rows as never[], { ignoreDuplicates: true, transaction });
							const found = (await this.runs.findAll({ attributes: ["id"], where: { id: ids }, raw: true, transaction })) as unknown as { id: string }[];
							return new Set(found.map((r) => r.id));
						}),
					);
					return rows.map((r) => (present.has(r.id) ? runView(r) : null));
				},
			},

			/** Record a fire that did not run (skipped by the concurrency policy, missed by the misfire policy). */
			recordRun: {
				visibility: "public",
				params: {
					jobId: "string",
					scheduledAt: "number",
					trigger: { type: "enum", values: ["schedule", "manual", "retry", "catchup"] },
					status: { type: "enum", values: ["skipped", "missed"] },
					node: "string",
					error: { type: "string", optional: true },
				},
				async handler(this: JobsThis, ctx: Ctx<{ jobId: string; scheduledAt: number; trigger: RunTrigger; status: RunStatus; node: string; error?: string }>) {
					const p = ctx.params;
					const now = clock.now();
					const row: RunRow = {
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
					};
					try {
						await this.guard(() => this.runs.create(row as never));
					} catch (err) {
						if (isUniqueViolation(err)) return null;
						throw err;
					}
					return runView(row);
				},
			},

			/**
			 * Record the end of runs and move their jobs' status, in one transaction. Idempotent: a run
			 * already final is left alone. Answers, for each, whether it was written now.
			 */
			finishRuns: {
				visibility: "public",
				params: {
					results: {
						type: "array",
						items: {
							type: "object",
							props: {
								runId: "string",
								jobId: "string",
								scheduledAt: "number",
								recurring: "boolean",
								// skipped: a prefired fire cancelled before its instant (the job's code never ran).
								status: { type: "enum", values: ["succeeded", "failed", "timed_out", "skipped"] },
								exitCode: { type: "number", nullable: true },
								signal: { type: "string", nullable: true },
								output: { type: "string" },
								startedAt: { type: "number", nullable: true },
								finishedAt: "number",
								error: { type: "string", nullable: true },
								willRetry: { type: "boolean", optional: true },
							},
						},
					},
				},
				async handler(this: JobsThis, ctx: Ctx<{ results: RunResult[] }>) {
					const results = ctx.params.results;
					const written: boolean[] = [];
					const finishedJobs: string[] = [];
					// Raw statements: two per run, in one transaction (model.update costs several times more).
					const db = this.adapter.db;
					await this.guard(() =>
						db.transaction(async (transaction) => {
							written.length = 0;
							finishedJobs.length = 0;
							const lastByJob = new Map<string, RunResult>();
							for (const r of results) {
								const [, meta] = (await db.query(
									// SIGNAL is a reserved word in MySQL/MariaDB: quoted (SQLite takes backticks too).
									"UPDATE runs SET status = ?, exitCode = ?, `signal` = ?, output = ?, startedAt = ?, finishedAt = ?, error = ? WHERE id = ? AND status = 'running'",
									{
										replacements: [r.status, r.exitCode, r.signal, r.output, r.startedAt, r.finishedAt, r.error, r.runId],
										transaction,
										type: QueryTypes.UPDATE,
									},
								)) as unknown as [unknown, number];
								const n = Number(meta ?? 0);
								written.push(n > 0);
								const prev = lastByJob.get(r.jobId);
								if (n > 0 && (!prev || prev.finishedAt <= r.finishedAt)) lastByJob.set(r.jobId, r);
							}
							for (const [jobId, r] of lastByJob) {
								const lastRun = JSON.stringify({
									id: r.runId,
									status: r.status,
									scheduledAt: iso(r.scheduledAt),
									finishedAt: iso(r.finishedAt),
									exitCode: r.exitCode,
								});
								const status =
									r.willRetry || r.status === "skipped" ? null : jobStatusAfterRun({ recurring: r.recurring, status: "scheduled" }, r.status, false);
								// A deleted job keeps its status (finished); a pending retry leaves it as it is.
								await db.query(
									"UPDATE jobs SET lastRun = ?, updatedAt = ?, status = CASE WHEN deletedAt IS NULL AND ? IS NOT NULL THEN ? ELSE status END WHERE id = ?",
									{
										replacements: [lastRun, clock.now(), status, status, jobId],
										transaction,
										type: QueryTypes.UPDATE,
									},
								);
								if (status === "finished") finishedJobs.push(jobId);
							}
						}),
					);
					for (const id of finishedJobs) this.changed(id, "finished");
					return written;
				},
			},

			/** Runs still marked running for these jobs (to find runs cut off by a dead worker). */
			inflight: {
				visibility: "public",
				params: { jobIds: { type: "array", items: "string" } },
				async handler(this: JobsThis, ctx: Ctx<{ jobIds: string[] }>) {
					const out: RunRow[] = [];
					if (ctx.params.jobIds.length > 1000) {
						// A large set (a dead worker's share): one query for every running run (few, by the
						// status index), filtered here, instead of one query per thousand jobs.
						const wanted = new Set(ctx.params.jobIds);
						const rows = (await this.guard(() => this.runs.findAll({ where: { status: "running" }, raw: true }))) as unknown as RunRow[];
						for (const r of rows) if (wanted.has(r.jobId)) out.push(r);
					} else {
						const rows = await this.guard(() => this.runs.findAll({ where: { status: "running", jobId: ctx.params.jobIds }, raw: true }));
						out.push(...(rows as unknown as RunRow[]));
					}
					return out.map((r) => ({ id: r.id, jobId: r.jobId, scheduledAt: Number(r.scheduledAt), attempt: r.attempt, trigger: r.trigger, node: r.node }));
				},
			},

			/** Mark a run cut off by a dead worker. */
			abandonRun: {
				visibility: "public",
				params: { runId: "string", error: "string" },
				async handler(this: JobsThis, ctx: Ctx<{ runId: string; error: string }>) {
					const [n] = await this.guard(() =>
						this.runs.update({ status: "failed", finishedAt: clock.now(), error: ctx.params.error }, { where: { id: ctx.params.runId, status: "running" } }),
					);
					return n > 0;
				},
			},

			/** The database server's clock in epoch ms (workers measure their offset against it). */
			dbTime: {
				visibility: "public",
				params: {},
				async handler(this: JobsThis) {
					if (this.adapter.db.getDialect() !== "mysql") return clock.now();
					const [rows] = await this.guard(() => this.adapter.db.query("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS t"));
					return Number((rows as { t: number | string }[])[0].t);
				},
			},

			health: {
				visibility: "public",
				params: {},
				async handler(this: JobsThis) {
					const out: Record<string, { ok: boolean; error?: string }> = {};
					try {
						await this.adapter.db.query("SELECT 1");
						out.database = { ok: true };
					} catch (err) {
						out.database = { ok: false, error: (err as Error).message };
					}
					try {
						await deps.objectStore.ping();
						out.objectStore = { ok: true };
					} catch (err) {
						out.objectStore = { ok: false, error: (err as Error).message };
					}
					return out;
				},
			},
		},

		methods: {
			requireUser(ctx: Ctx<unknown>): AuthUser {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				return user;
			},

			async findOwned(this: JobsThis, ctx: Ctx<unknown>, id: string): Promise<JobRow> {
				const user = this.requireUser(ctx);
				const row = (await this.guard(() => this.adapter.model.findByPk(id, { raw: true }))) as unknown as JobRow | null;
				if (!row || (!user.admin && row.owner !== user.id)) throw notFound("Job", id);
				return {
					...row,
					lastScheduledAt: row.lastScheduledAt === null ? null : Number(row.lastScheduledAt),
					deletedAt: row.deletedAt === null ? null : Number(row.deletedAt),
				};
			},

			changed(this: JobsThis, id: string, op: string) {
				this.broker.broadcast("jobs.changed", { id, op });
			},
		},
	};
}
