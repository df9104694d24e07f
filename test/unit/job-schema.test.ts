/**
 * The job schema is the one list of a job's fields: the columns, the validator, both views and the
 * TypeScript types cover exactly the fields it declares.
 */
import { FieldError } from "../../lib/core/errors";
import { API_FIELDS, COLUMN_FIELDS, JOB_SCHEMA, SETTABLE_FIELDS, WORKER_FIELDS, fieldSpec, jobColumns } from "../../lib/core/job-schema";
import type { ConcurrencyPolicy, Job, JobSettings, JobStatus, JobType, MisfirePolicy, RunSummary } from "../../lib/core/types";
import { validateJobCreate, validateJobPatch } from "../../lib/core/validation";
import { jobRowChanges, jobView, newJobRow, workerJobView, type JobRow, type WorkerJob } from "../../lib/core/views";
import { RUN_COLUMNS, attributes, defineRunModel, jobModel } from "../../lib/adapters/sql/models";
import type { RunRow } from "../../lib/core/views";
import { Sequelize } from "sequelize";

// ---- the derived types have the shapes the hand-written ones had ----
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <T extends true>(): T | undefined => undefined;

interface OldSettings {
	name: string | null;
	type: JobType;
	executable: string;
	schedule: string;
	timezone: string;
	runAs: string | null;
	timeout: number | null;
	recurring: boolean;
	concurrency: ConcurrencyPolicy;
	retries: number;
	misfire: MisfirePolicy;
	startingDeadline: number | null;
	env: Record<string, string>;
	secretEnv: Record<string, string>;
	suspended: boolean;
}
interface OldJob extends OldSettings {
	id: string;
	status: JobStatus;
	digest: string | null;
	size: number | null;
	owner: string;
	worker: string | null;
	nextRunAt: string | null;
	lastRun: RunSummary | null;
	createdAt: string;
	updatedAt: string;
}
interface OldRow extends Omit<OldSettings, "env" | "secretEnv"> {
	id: string;
	status: JobStatus;
	digest: string | null;
	size: number | null;
	env: string;
	secretEnv: string | null;
	owner: string;
	worker: string | null;
	lastScheduledAt: number | null;
	lastRun: string | null;
	deletedAt: number | null;
	createdAt: number;
	updatedAt: number;
}
interface OldWorkerJob extends Omit<OldSettings, "name"> {
	id: string;
	digest: string | null;
	size: number | null;
	status: JobStatus;
	deleted: boolean;
	lastScheduledAt: number | null;
	createdAt: number;
	updatedAt: number;
}
same<Equals<JobSettings, OldSettings>>();
same<Equals<Job, OldJob>>();
same<Equals<JobRow, OldRow>>();
same<Equals<WorkerJob, OldWorkerJob>>();

const sorted = (keys: Iterable<string>) => [...keys].sort();
const declared = Object.keys(JOB_SCHEMA);
const now = Date.parse("2025-01-01T00:00:00Z");

function row(over: Partial<JobRow> = {}): JobRow {
	const settings = validateJobCreate({ type: "command", executable: "echo hi", schedule: "*/5 * * * *", env: { A: "1" } }, { admin: false });
	return { ...newJobRow(settings, { id: "j1", owner: "u1", digest: null, size: null, createdAt: now, updatedAt: now }), ...over };
}

describe("job schema", () => {
	test("every declared field is stored, derived for a view, or both; derived ones have no column", () => {
		for (const name of declared) {
			const f = fieldSpec(name as keyof typeof JOB_SCHEMA);
			if (f.encoding === "derived") {
				expect([name, f.column]).toEqual([name, undefined]);
				expect([name, !!(f.api || f.worker)]).toEqual([name, true]);
			} else expect([name, f.column?.kind]).toEqual([name, expect.any(String)]);
			if (f.input) expect([name, f.column]).toEqual([name, expect.anything()]);
		}
	});

	test("the jobs model has exactly the stored fields as columns, in declaration order", () => {
		const model = jobModel("sqlite");
		expect(Object.keys(model.define)).toEqual(COLUMN_FIELDS);
		expect(Object.keys(jobColumns())).toEqual(COLUMN_FIELDS);
		expect(COLUMN_FIELDS).toEqual(declared.filter((k) => fieldSpec(k as keyof typeof JOB_SCHEMA).encoding !== "derived"));
		expect(model.define.id).toMatchObject({ primaryKey: true });
		expect(model.define.name).toMatchObject({ allowNull: true });
		expect(model.define.owner).toMatchObject({ allowNull: false });
		expect(model.options.indexes).toEqual([{ fields: ["status"] }, { fields: ["owner"] }, { fields: ["worker"] }]);
	});

	test("the runs model has exactly RunRow's fields; the output is MEDIUMTEXT on MySQL only", () => {
		const sample: Record<keyof RunRow, true> = {
			id: true,
			jobId: true,
			scheduledAt: true,
			attempt: true,
			trigger: true,
			status: true,
			startedAt: true,
			finishedAt: true,
			exitCode: true,
			signal: true,
			output: true,
			node: true,
			error: true,
		};
		expect(sorted(Object.keys(RUN_COLUMNS))).toEqual(sorted(Object.keys(sample)));
		const model = defineRunModel(new Sequelize({ dialect: "sqlite", storage: ":memory:", logging: false }));
		expect(sorted(Object.keys(model.getAttributes()))).toEqual(sorted(Object.keys(sample)));
		expect(String(attributes(RUN_COLUMNS, "mysql").output.type)).toBe("MEDIUMTEXT");
		expect(String(attributes(RUN_COLUMNS, "sqlite").output.type)).toBe("TEXT");
	});

	test("the validator knows exactly the settable fields, in the documented check order", () => {
		expect(SETTABLE_FIELDS).toEqual([
			"type",
			"executable",
			"schedule",
			"timezone",
			"name",
			"runAs",
			"timeout",
			"recurring",
			"concurrency",
			"retries",
			"misfire",
			"startingDeadline",
			"env",
			"secretEnv",
			"suspended",
		]);
		const created = validateJobCreate({ type: "command", executable: "x", schedule: "* * * * *" }, { admin: false });
		expect(Object.keys(created)).toEqual(SETTABLE_FIELDS);
		let err: unknown;
		try {
			validateJobCreate({ type: "command", executable: "x", schedule: "* * * * *", owner: "me" }, { admin: false });
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(FieldError);
		expect((err as FieldError).message).toContain(`allowed: ${SETTABLE_FIELDS.join(", ")}`);
		// Every stored field a user may not set is refused as unknown.
		for (const name of COLUMN_FIELDS.filter((k) => !(SETTABLE_FIELDS as readonly string[]).includes(k))) {
			expect(() => validateJobPatch({ [name]: "x" }, { admin: true })).toThrow(`unknown field "${name}"`);
		}
	});

	test("the API view answers exactly the api fields, in declaration order", () => {
		const view = jobView(row(), now);
		expect(Object.keys(view)).toEqual(API_FIELDS);
		expect(sorted(API_FIELDS)).toEqual(sorted(declared.filter((k) => fieldSpec(k as keyof typeof JOB_SCHEMA).api)));
		expect(view).toMatchObject({
			env: { A: "1" },
			createdAt: "2025-01-01T00:00:00.000Z",
			recurring: true,
			nextRunAt: "2025-01-01T00:05:00.000Z",
			lastRun: null,
		});
	});

	test("the worker view answers exactly the worker fields (times as numbers)", () => {
		const view = workerJobView(row({ deletedAt: now, recurring: 1 as unknown as boolean, size: "12" as unknown as number }));
		expect(Object.keys(view)).toEqual(WORKER_FIELDS);
		expect(view).toMatchObject({ deleted: true, createdAt: now, recurring: true, size: 12, env: { A: "1" }, lastScheduledAt: null });
		expect(view).not.toHaveProperty("name");
		expect(view).not.toHaveProperty("owner");
	});

	test("a new row holds every column; a patch writes only what it holds, json as text", () => {
		const r = row();
		expect(Object.keys(r)).toEqual(COLUMN_FIELDS);
		expect(r).toMatchObject({ status: "scheduled", worker: null, lastRun: null, deletedAt: null, env: '{"A":"1"}', suspended: false });
		expect(jobRowChanges({ env: { B: "2" }, name: null })).toEqual({ env: '{"B":"2"}', name: null });
	});
});
