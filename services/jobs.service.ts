/**
 * jobs: persists jobs and their runs (DbMixin: moleculer-db + sequelize; SQLite on the embedded
 * default, MySQL/MariaDB with DATABASE_URL). Owns the `jobs` and `runs` tables
 * (lib/adapters/sql/models.ts, from the job schema). REST-facing actions take the caller from
 * ctx.meta.user and check its role, ownership and runAs (lib/core/roles.ts); the worker and manager
 * use the internal ones over the broker, thin calls into the run ledger
 * (lib/adapters/sql/run-ledger.ts) and the models. Uploaded executables go to the object store
 * (lib/adapters/executables.ts).
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { BrokerNode, Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Op, type Transaction } from "sequelize";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { serverTime, syncModel } from "../lib/adapters/sql/db";
import { defineRunModel, jobModel } from "../lib/adapters/sql/models";
import { JobTable } from "../lib/adapters/sql/job-table";
import { RunLedger } from "../lib/adapters/sql/run-ledger";
import { Executables } from "../lib/adapters/executables";
import { type ObjectStore } from "../lib/adapters/object-store";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";
import { FINISH_RUNS_PARAMS, RECORD_RUNS_PARAMS, START_RUNS_PARAMS } from "../lib/adapters/moleculer/run-params";
import { conflict, forbidden, invalidField, notFound, unauthorized, unavailable } from "../lib/core/errors";
import { SETTABLE_FIELDS } from "../lib/core/job-schema";
import { readsAllJobs, requireJobAccess, requireRole, requireRunAs, roleOf } from "../lib/core/roles";
import { nextFireTimes, validateTimezone, parseInstant, parseSchedule } from "../lib/core/schedule";
import type { AuthUser, RunRecord, RunResult, RunStart } from "../lib/core/types";
import { checkEnvDisjoint, ID_PATTERN, MAX_PAGE_LIMIT, MAX_PAGE_OFFSET, sealSecretEnv, validateJobCreate, validateJobPatch } from "../lib/core/validation";
import type { SecretBox } from "../lib/adapters/secrets/secret-box";
import { AuditTable, writeAudited } from "../lib/adapters/sql/audit-table";
import { auditAction } from "../lib/adapters/moleculer/audit-params";
import { actorOf, auditRecord, jobChange, jobPatchAction, refusedOutcome, type AuditAction } from "../lib/core/audit";
import { iso, jobRowChanges, jobView, newJobRow, runView, workerJobView, type JobRow, type WorkerJob } from "../lib/core/views";
import { DbMixin, type DbMixinHost } from "../mixins/db.mixin";

export interface JobsDeps {
	config: Config;
	clock: Clock;
	objectStore: ObjectStore;
	/** Seals secretEnv values before they are stored (this service never opens them, but to rotate the key). */
	secrets: SecretBox;
}

type Meta = {
	user?: AuthUser;
	clientAddress?: string;
	$statusCode?: number;
	$location?: string;
	$responseType?: string;
	$responseHeaders?: Record<string, string>;
};
type Ctx<P = Record<string, unknown>> = Context<P, Meta>;

interface JobsThis extends DbMixinHost {
	table: JobTable;
	ledger: RunLedger;
	audit: AuditTable;
	requireUser(ctx: Ctx<unknown>): AuthUser;
	findOwned(ctx: Ctx<unknown>, id: string, mode: "read" | "write"): Promise<JobRow>;
	changed(id: string, op: string): void;
	/** Make a change and its audit record in one transaction (or neither). */
	audited(
		ctx: Ctx<unknown>,
		action: AuditAction,
		target: string,
		change: Record<string, unknown> | null,
		write: (t: Transaction) => Promise<void>,
	): Promise<void>;
	/** Record a refused request (nothing changed); never throws. */
	auditRefused(ctx: Ctx<unknown>, action: AuditAction, target: string | null, err: unknown): Promise<void>;
}

/** Fields a user may send (the schema's settable ones); lib/core/validation checks and types them. */
const JOB_PARAMS = {
	...Object.fromEntries(SETTABLE_FIELDS.map((f) => [f, { type: "any", optional: true }])),
	$$strict: false,
};

const ID = { type: "string", pattern: ID_PATTERN };
const PAGE = {
	limit: { type: "number", integer: true, min: 1, max: MAX_PAGE_LIMIT, optional: true, convert: true },
	offset: { type: "number", integer: true, min: 0, max: MAX_PAGE_OFFSET, optional: true, convert: true },
};

/** Ids per IN (...) list. */
const CHUNK = 1000;

/** A job's sealed secretEnv values, by key ({} for none, or a row from before the column). */
function storedSecrets(row: JobRow): Record<string, string> {
	return row.secretEnv ? (JSON.parse(row.secretEnv) as Record<string, string>) : {};
}

/** A backend's health: ok, or the error of the probe. */
async function probe(fn: () => Promise<unknown>): Promise<{ ok: boolean; error?: string }> {
	try {
		await fn();
		return { ok: true };
	} catch (err) {
		return { ok: false, error: (err as Error).message };
	}
}

/**
 * A query parameter as text: a string as it is; anything else the query parser made of it (an array
 * for a repeated name, an object for brackets) as String() renders it, for the checks that follow.
 */
function paramText(v: unknown): string {
	return typeof v === "string" ? v : String(v);
}

export default function createJobsService(deps: JobsDeps): ServiceSchema<ServiceSettingSchema, JobsThis> {
	const { config, clock } = deps;
	const executables = new Executables(deps.objectStore, config.maxUploadBytes);
	return {
		name: "jobs",
		mixins: [
			DbMixin<JobsThis>({
				config,
				clock,
				owner: "jobs",
				model: jobModel,
				// Workers record runs in parallel batches: on SQLite one at a time (see DbMixinOptions).
				serializeSqlite: true,
				async afterConnected(this: JobsThis) {
					const runs = defineRunModel(this.adapter.db);
					// Safe when several processes start at once (a lost table/index race is retried).
					await syncModel(runs);
					this.table = new JobTable(this.adapter.model);
					this.audit = await AuditTable.open(this.adapter.db, "job_audit");
					this.ledger = new RunLedger(this.adapter.db, { jobs: this.adapter.model, runs }, clock);
				},
			}),
			ErrorsMixin(),
		],
		settings: { idField: "id" },

		actions: {
			/**
			 * Re-seal every secretEnv value sealed with another key than the current one (after a key
			 * rotation: CRONJOB_SECRET_KEY the new key, CRONJOB_SECRET_KEY_PREVIOUS the old). The one
			 * place outside a worker that opens secret values; an operator's action (the REPL:
			 * `call jobs.rotateSecrets`, or an admin's call). Answers how many values it re-sealed.
			 */
			rotateSecrets: {
				params: {},
				async handler(this: JobsThis, ctx: Ctx) {
					const caller = ctx.meta.user;
					if (caller && roleOf(caller) !== "admin") throw forbidden("Only admins may rotate the secret key");
					const rows = (await this.guard(() =>
						this.adapter.model.findAll({ attributes: ["id", "secretEnv"], where: { secretEnv: { [Op.ne]: null } }, raw: true }),
					)) as unknown as Pick<JobRow, "id" | "secretEnv">[];
					let values = 0;
					let jobs = 0;
					for (const row of rows) {
						const sealed = storedSecrets(row as JobRow);
						if (!Object.values(sealed).some((v) => deps.secrets.stale(v))) continue;
						const next = Object.fromEntries(
							Object.entries(sealed).map(([k, v]) => {
								if (!deps.secrets.stale(v)) return [k, v];
								values++;
								return [k, deps.secrets.seal(deps.secrets.open(v))];
							}),
						);
						await this.guard(() => this.table.update(row.id, { secretEnv: JSON.stringify(next), updatedAt: clock.now() }));
						this.changed(row.id, "updated");
						jobs++;
					}
					return { jobs, values, keyId: deps.secrets.currentId };
				},
			},

			/** The job changes and refused job requests (GET /audit: api.audit merges them with the users service's). */
			audit: auditAction(),

			// ---- REST-facing ----
			createJob: {
				params: JOB_PARAMS,
				async handler(this: JobsThis, ctx: Ctx) {
					const user = this.requireUser(ctx);
					let input;
					try {
						requireRole(user, "member", "Creating a job");
						input = validateJobCreate({ ...ctx.params }, { admin: roleOf(user) === "admin", userRunAs: config.userRunAs });
						checkEnvDisjoint(input.env, input.secretEnv);
					} catch (err) {
						await this.auditRefused(ctx, "job.create", null, err);
						throw err;
					}
					const change = jobChange({ ...input });
					input.secretEnv = sealSecretEnv(input.secretEnv, {}, (v) => deps.secrets.seal(v));
					const stored = await executables.save(input.type, input.executable);
					const now = clock.now();
					const row = newJobRow(input, { id: randomUUID(), owner: user.id, createdAt: now, updatedAt: now, ...stored });
					await this.audited(ctx, "job.create", row.id, change, (t) => this.table.insert(row, t));
					this.changed(row.id, "created");
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/jobs/${row.id}`;
					return jobView(row, clock.now());
				},
			},

			listJobs: {
				params: { status: { type: "enum", values: ["scheduled", "finished", "error"], optional: true }, ...PAGE },
				async handler(this: JobsThis, ctx: Ctx<{ status?: string; limit?: number; offset?: number }>) {
					const user = this.requireUser(ctx);
					const { status, limit = 100, offset = 0 } = ctx.params;
					const rows = await this.guard(() => this.table.list({ owner: readsAllJobs(user) ? undefined : user.id, status, limit, offset }));
					return rows.map((r) => jobView(r, clock.now()));
				},
			},

			getJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					return jobView(await this.findOwned(ctx, ctx.params.id, "read"), clock.now());
				},
			},

			updateJob: {
				params: { id: ID, ...JOB_PARAMS },
				async handler(this: JobsThis, ctx: Ctx<{ id: string } & Record<string, unknown>>) {
					const user = this.requireUser(ctx);
					const { id, ...body } = ctx.params;
					let job: JobRow;
					let patch;
					try {
						job = await this.findOwned(ctx, id, "write");
						if (job.deletedAt !== null) throw conflict("The job was deleted", "id");
						requireRunAs(user, job, config.userRunAs);
						patch = validateJobPatch(body, { admin: roleOf(user) === "admin", currentType: job.type, userRunAs: config.userRunAs });
						if (patch.env !== undefined || patch.secretEnv !== undefined) {
							const stored = storedSecrets(job);
							const secretEnv = patch.secretEnv ?? stored;
							checkEnvDisjoint(patch.env ?? (JSON.parse(job.env) as Record<string, string>), secretEnv);
							if (patch.secretEnv !== undefined) patch.secretEnv = sealSecretEnv(patch.secretEnv, stored, (v) => deps.secrets.seal(v));
						}
					} catch (err) {
						await this.auditRefused(ctx, jobPatchAction(body), id, err);
						throw err;
					}
					const change = jobChange({ ...patch });
					const now = clock.now();
					const changes: Partial<JobRow> = { ...jobRowChanges(patch), updatedAt: now };
					if (patch.executable !== undefined) {
						const type = patch.type ?? job.type;
						Object.assign(changes, { type, ...(await executables.save(type, patch.executable)) });
					}
					// Fire times before a change of schedule, time zone or suspension were never missed:
					// the worker catches up only what passed after this moment.
					if (patch.schedule !== undefined || patch.timezone !== undefined || patch.suspended === false) {
						changes.lastScheduledAt = Math.max(job.lastScheduledAt ?? 0, now);
					}
					await this.audited(ctx, jobPatchAction(patch), id, change, (t) => this.table.update(id, changes, t));
					this.changed(id, "updated");
					return jobView({ ...job, ...changes }, clock.now());
				},
			},

			removeJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					let job: JobRow;
					try {
						job = await this.findOwned(ctx, ctx.params.id, "write");
					} catch (err) {
						await this.auditRefused(ctx, "job.delete", ctx.params.id, err);
						throw err;
					}
					const now = clock.now();
					const changes: Partial<JobRow> = { status: "finished", deletedAt: job.deletedAt ?? now, worker: null, updatedAt: now };
					await this.audited(ctx, "job.delete", job.id, null, (t) => this.table.update(job.id, changes, t));
					this.changed(job.id, "removed");
					return jobView({ ...job, ...changes }, clock.now());
				},
			},

			triggerJob: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>) {
					let job: JobRow;
					try {
						job = await this.findOwned(ctx, ctx.params.id, "write");
						if (job.deletedAt !== null) throw conflict("The job was deleted", "id");
						requireRunAs(this.requireUser(ctx), job, config.userRunAs);
					} catch (err) {
						await this.auditRefused(ctx, "job.run", ctx.params.id, err);
						throw err;
					}
					// The registry's node catalog (typed `any` by moleculer): its nodes by id.
					const nodes = this.broker.registry.nodes as { get(id: string): BrokerNode | undefined };
					const opts = job.worker && nodes.get(job.worker)?.available ? { nodeID: job.worker } : {};
					try {
						const run = await ctx.call<{ id?: string }, { jobId: string }>("worker.runNow", { jobId: job.id }, opts);
						ctx.meta.$statusCode = 202;
						// The run itself is the change (recorded by the worker): this records who asked for it.
						await this.audited(ctx, "job.run", job.id, { run: run?.id ?? null }, () => Promise.resolve());
						return run;
					} catch (err) {
						const e = err as { name?: string };
						const down = e.name === "ServiceNotFoundError" || e.name === "ServiceNotAvailableError" ? unavailable("worker", "no live worker") : err;
						await this.auditRefused(ctx, "job.run", job.id, down);
						throw down;
					}
				},
			},

			jobRuns: {
				params: { id: ID, ...PAGE },
				async handler(this: JobsThis, ctx: Ctx<{ id: string; limit?: number; offset?: number }>) {
					const job = await this.findOwned(ctx, ctx.params.id, "read");
					const page = { limit: ctx.params.limit ?? 100, offset: ctx.params.offset ?? 0 };
					return (await this.guard(() => this.ledger.runsOf(job.id, page))).map(runView);
				},
			},

			jobExecutable: {
				params: { id: ID },
				async handler(this: JobsThis, ctx: Ctx<{ id: string }>): Promise<Readable> {
					const job = await this.findOwned(ctx, ctx.params.id, "read");
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
					const tz = timezone === undefined ? "UTC" : paramText(timezone);
					let fromMs = clock.now();
					// Within the years fire times are computed for (croner fails on dates far out).
					if (from !== undefined) fromMs = parseInstant("from", paramText(from));
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
					return this.guard(() => this.table.schedulableIds(ctx.params));
				},
			},

			byIds: {
				visibility: "public",
				params: { ids: { type: "array", items: "string" } },
				async handler(this: JobsThis, ctx: Ctx<{ ids: string[] }>) {
					const out: WorkerJob[] = [];
					for (let i = 0; i < ctx.params.ids.length; i += CHUNK) {
						const chunk = ctx.params.ids.slice(i, i + CHUNK);
						const rows = await this.guard(() => this.table.byIds(chunk));
						await this.guard(() => this.ledger.applyCatchUpBaselines(rows));
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
						const ids = byWorker.get(m.to);
						if (ids) ids.push(m.jobId);
						else byWorker.set(m.to, [m.jobId]);
					}
					for (const [worker, ids] of byWorker) {
						for (let i = 0; i < ids.length; i += CHUNK) {
							await this.guard(() => this.table.update(ids.slice(i, i + CHUNK), { worker }), true);
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
				params: START_RUNS_PARAMS,
				async handler(this: JobsThis, ctx: Ctx<{ runs: RunStart[] }>) {
					return (await this.guard(() => this.ledger.startRuns(ctx.params.runs), true)).map((r) => (r ? runView(r) : null));
				},
			},

			/** Record fires that did not run (skipped by the concurrency policy, missed by the misfire policy), in one statement. */
			recordRuns: {
				visibility: "public",
				params: RECORD_RUNS_PARAMS,
				async handler(this: JobsThis, ctx: Ctx<{ records: RunRecord[] }>) {
					await this.guard(() => this.ledger.recordRuns(ctx.params.records), true);
					return ctx.params.records.length;
				},
			},

			/**
			 * Record the end of runs and move their jobs' status, in one transaction. Idempotent: a run
			 * already final is left alone. Answers, for each, whether it was written now.
			 */
			finishRuns: {
				visibility: "public",
				params: FINISH_RUNS_PARAMS,
				async handler(this: JobsThis, ctx: Ctx<{ results: RunResult[] }>) {
					const { written, finishedJobs } = await this.guard(() => this.ledger.finishRuns(ctx.params.results), true);
					for (const id of finishedJobs) this.changed(id, "finished");
					return written;
				},
			},

			/** Runs still marked running for these jobs (to find runs cut off by a dead worker). */
			inflight: {
				visibility: "public",
				params: { jobIds: { type: "array", items: "string" } },
				async handler(this: JobsThis, ctx: Ctx<{ jobIds: string[] }>) {
					return this.guard(() => this.ledger.inflight(ctx.params.jobIds), true);
				},
			},

			/** Mark a run cut off by a dead worker. */
			abandonRun: {
				visibility: "public",
				params: { runId: "string", error: "string" },
				async handler(this: JobsThis, ctx: Ctx<{ runId: string; error: string }>) {
					return this.guard(() => this.ledger.abandonRun(ctx.params.runId, ctx.params.error), true);
				},
			},

			/** The database server's clock in epoch ms (workers measure their offset against it). */
			dbTime: {
				visibility: "public",
				params: {},
				async handler(this: JobsThis) {
					if (this.adapter.db.getDialect() !== "mysql") return clock.now();
					return this.guard(() => serverTime(this.adapter.db));
				},
			},

			health: {
				visibility: "public",
				params: {},
				async handler(this: JobsThis) {
					return { database: await probe(() => this.adapter.db.query("SELECT 1")), objectStore: await probe(() => deps.objectStore.ping()) };
				},
			},
		},

		methods: {
			requireUser(ctx: Ctx<unknown>): AuthUser {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				return user;
			},

			async audited(
				this: JobsThis,
				ctx: Ctx<unknown>,
				action: AuditAction,
				target: string,
				change: Record<string, unknown> | null,
				write: (t: Transaction) => Promise<void>,
			) {
				const rec = auditRecord(randomUUID(), clock.now(), actorOf(ctx.meta.user, ctx.meta.clientAddress), action, target, change);
				await this.guard(() => writeAudited(this.adapter.db, this.audit, rec, write));
				// Behind the other work, not awaited: a change's answer did wait for it (POST /jobs p99 +150 ms under load).
				const prune = this.audit.pruneDue(clock.now(), config.auditRetentionDays);
				if (prune) this.guard(prune, true).catch((e: Error) => this.logger.warn(`Cannot prune the audit log: ${e.message}`));
			},

			async auditRefused(this: JobsThis, ctx: Ctx<unknown>, action: AuditAction, target: string | null, err: unknown) {
				const rec = auditRecord(randomUUID(), clock.now(), actorOf(ctx.meta.user, ctx.meta.clientAddress), action, target, null, refusedOutcome(err));
				try {
					await this.guard(() => this.audit.insert(rec));
				} catch (e) {
					this.logger.warn(`Cannot record a refused ${action} in the audit log: ${(e as Error).message}`);
				}
			},

			/** The job if the caller may read it (mode "read") or change and run it ("write"): lib/core/roles.ts. */
			async findOwned(this: JobsThis, ctx: Ctx<unknown>, id: string, mode: "read" | "write"): Promise<JobRow> {
				const user = this.requireUser(ctx);
				const row = await this.guard(() => this.table.find(id));
				if (!row) throw notFound("Job", id);
				requireJobAccess(user, row, mode);
				return row;
			},

			changed(this: JobsThis, id: string, op: string) {
				void this.broker.broadcast("jobs.changed", { id, op });
			},
		},
	};
}
