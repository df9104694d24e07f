/**
 * The params (fastest-validator schemas) of the jobs service's run actions, as the worker calls
 * them: jobs.startRuns (RunStart), jobs.recordRuns (RunRecord; both in lib/core/types.ts)
 * and jobs.finishRuns (RunResult, lib/core/types.ts).
 */
const TRIGGER = { type: "enum", values: ["schedule", "manual", "retry", "catchup"] };

export const START_RUNS_PARAMS = {
	runs: {
		type: "array",
		items: {
			type: "object",
			props: { jobId: "string", scheduledAt: "number", attempt: { type: "number", integer: true, min: 1 }, trigger: TRIGGER, node: "string" },
		},
	},
};

export const RECORD_RUNS_PARAMS = {
	records: {
		type: "array",
		items: {
			type: "object",
			props: {
				jobId: "string",
				scheduledAt: "number",
				trigger: TRIGGER,
				status: { type: "enum", values: ["skipped", "missed"] },
				node: "string",
				error: { type: "string", optional: true },
			},
		},
	},
};

export const FINISH_RUNS_PARAMS = {
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
};
