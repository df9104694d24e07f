/**
 * Custom commands for the Moleculer REPL (`npm run repl`, or `moleculer connect` with the same
 * transporter): list jobs, workers and the leader, show a worker's crontab, trigger a job. The REPL
 * is an operator's console inside the cluster, so it acts as an admin.
 */
import type { ServiceBroker } from "moleculer";
import type { Job } from "../lib/core/types";
import type { WorkerView } from "../lib/engine/manager/manager-engine";

const OPERATOR = { user: { id: "repl", name: "repl", admin: true } };

export interface ReplCommand {
	command: string;
	description: string;
	alias?: string[];
	options?: { option: string; description: string }[];
	action(broker: ServiceBroker, args: Record<string, unknown>): Promise<void>;
}

/** A command's argument as text: the REPL's parser gives words as strings, and may give a numeric one as a number. */
function argText(v: unknown): string {
	return typeof v === "string" ? v : String(v);
}

function print(text: string) {
	process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

export function replCommands(out: (text: string) => void = print): ReplCommand[] {
	return [
		{
			command: "cron-jobs",
			description: "List jobs (newest first): id, status, schedule, worker, next run",
			options: [{ option: "-s, --status <status>", description: "scheduled, finished or error" }],
			async action(broker, args) {
				const jobs = await broker.call<Job[], { limit: number; status?: string }>(
					"jobs.listJobs",
					{ limit: 1000, ...(args.status ? { status: argText(args.status) } : {}) },
					{ meta: OPERATOR },
				);
				out(
					jobs.map((j) => [j.id, j.status, JSON.stringify(j.schedule), j.timezone, j.worker ?? "-", j.nextRunAt ?? "-"].join("\t")).join("\n") || "(no jobs)",
				);
			},
		},
		{
			command: "cron-workers",
			description: "List live workers with their job counts and clock offsets",
			async action(broker) {
				const workers = await broker.call<WorkerView[], Record<string, never>>("manager.workers", {});
				out(
					workers.map((w) => [w.id, `jobs=${w.jobs}`, `clockOffsetMs=${w.clockOffsetMs}`, w.clockOk ? "clock ok" : "CLOCK OFF"].join("\t")).join("\n") ||
						"(no workers)",
				);
			},
		},
		{
			command: "cron-leader",
			description: "Show the leading manager",
			async action(broker) {
				const res = await broker.call<{ leader: string | null }, Record<string, never>>("manager.leader", {});
				out(`leader: ${res.leader ?? "(none)"}`);
			},
		},
		{
			command: "cron-crontab <worker>",
			description: "Show a worker's crontab in crontab(5) syntax",
			async action(broker, args) {
				out(await broker.call<string, Record<string, never>>("worker.crontab", {}, { nodeID: argText(args.worker) }));
			},
		},
		{
			command: "cron-run <jobId>",
			description: "Run a job now",
			async action(broker, args) {
				const run = await broker.call("jobs.triggerJob", { id: argText(args.jobId) }, { meta: OPERATOR });
				out(JSON.stringify(run, null, 2));
			},
		},
	];
}
