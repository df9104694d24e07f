/** The jobs service over the broker, as the worker engine's typed JobsClient (lib/engine/worker/ports.ts). */
import type { ServiceBroker } from "moleculer";
import type { Run } from "../../core/types";
import type { WorkerJob } from "../../core/views";
import type { FinishRequest, InflightRun, JobsClient, NotRunRequest, StartRequest } from "../../engine/worker/ports";

export function brokerJobsClient(broker: ServiceBroker): JobsClient {
	return {
		byIds: (ids: string[]) => broker.call<WorkerJob[], { ids: string[] }>("jobs.byIds", { ids }),
		startRuns: (runs: StartRequest[]) => broker.call<(Run | null)[], { runs: StartRequest[] }>("jobs.startRuns", { runs }),
		// No retries here: a result that cannot be written waits in the engine's outbox.
		finishRuns: (results: FinishRequest[]) => broker.call<boolean[], { results: FinishRequest[] }>("jobs.finishRuns", { results }, { retries: 0 }),
		recordRuns: (records: NotRunRequest[]) => broker.call("jobs.recordRuns", { records }),
		inflight: (jobIds: string[]) => broker.call<InflightRun[], { jobIds: string[] }>("jobs.inflight", { jobIds }),
		abandonRun: (runId: string, error: string) => broker.call<boolean, { runId: string; error: string }>("jobs.abandonRun", { runId, error }),
		// A clock sample is worth little after a long wait: answer within 3 s or not at all.
		dbTime: () => broker.call<number, Record<string, never>>("jobs.dbTime", {}, { timeout: 3000, retries: 0 }),
	};
}
