/**
 * worker: runs on every node. A thin shell around the worker engine (lib/engine/worker/engine.ts):
 * it builds the engine from the node's configuration and adapters, and connects it to the broker
 * (actions, the jobs.changed event, the lifecycle).
 */
import * as os from "node:os";
import * as path from "node:path";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { ArtifactCache } from "../lib/adapters/local/artifact-cache";
import { OutboxFile } from "../lib/adapters/local/outbox-file";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";
import { brokerJobsClient } from "../lib/adapters/moleculer/jobs-client";
import { workerMetrics } from "../lib/adapters/moleculer/metrics";
import type { ObjectStore } from "../lib/adapters/object-store";
import type { SecretBox } from "../lib/adapters/secrets/secret-box";
import { JobProcessRunner } from "../lib/adapters/process/job-runner";
import type { Config } from "../lib/config";
import type { Clock } from "../lib/core/clock";
import { CACHE_DIR, WORK_DIR } from "../lib/core/data-layout";
import { WorkerEngine } from "../lib/engine/worker/engine";
import { ZookeeperMixin, type CoordinationFactory, type ZookeeperMixinMethods } from "../mixins/zookeeper.mixin";

export interface WorkerDeps {
	config: Config;
	clock: Clock;
	coordination: CoordinationFactory;
	objectStore: ObjectStore;
	/** Opens the jobs' secretEnv values for the run's environment. */
	secrets: SecretBox;
}

/** How long a stopping worker lets its running processes finish. */
const STOP_GRACE_MS = 10_000;

interface WorkerThis extends Service, ZookeeperMixinMethods {
	engine: WorkerEngine;
}

export default function createWorkerService(deps: WorkerDeps): ServiceSchema<ServiceSettingSchema, WorkerThis> {
	const { config, clock } = deps;
	return {
		name: "worker",
		mixins: [ZookeeperMixin(deps.coordination), ErrorsMixin()],

		actions: {
			/** Run a job now (POST /jobs/{id}/run). Answers the run as started. */
			runNow: {
				visibility: "public",
				params: { jobId: "string" },
				handler(this: WorkerThis, ctx: Context<{ jobId: string }>) {
					return this.engine.runNow(ctx.params.jobId);
				},
			},

			/** This worker's crontab in crontab(5) syntax. */
			crontab: {
				params: {},
				handler(this: WorkerThis) {
					return this.engine.crontab();
				},
			},

			status: {
				params: {},
				handler(this: WorkerThis) {
					return this.engine.status();
				},
			},

			health: {
				visibility: "public",
				params: {},
				handler(this: WorkerThis) {
					return this.engine.health();
				},
			},
		},

		events: {
			/** A job changed (created, patched, deleted, finished): refresh it if it is ours. */
			"jobs.changed": {
				params: { id: "string", op: "string" },
				handler(this: WorkerThis, ctx: Context<{ id: string; op: string }>) {
					return this.engine.jobChanged(ctx.params.id);
				},
			},
		},

		created(this: WorkerThis) {
			const logger = this.logger;
			const runner = new JobProcessRunner({
				clock,
				artifacts: new ArtifactCache({ dir: path.join(config.dataDir, CACHE_DIR), store: deps.objectStore, clock }),
				// Run folders under the data folder, behind 0711 parents (why: lib/core/data-layout.ts).
				workRoot: path.join(config.dataDir, WORK_DIR),
				defaultRunUser: config.defaultRunUser,
				maxOutputBytes: config.maxOutputBytes,
				runners: config.runners,
				secrets: deps.secrets,
				log: (msg) => logger.warn(msg),
			});
			const outbox = new OutboxFile(path.join(config.dataDir, `outbox-${config.nodeId.replace(/[^A-Za-z0-9_.-]/g, "_")}.json`), (msg, err) =>
				logger.error(msg, (err as Error).message),
			);
			this.engine = new WorkerEngine(
				{
					nodeId: this.broker.nodeID,
					prefireMs: config.prefireMs,
					maxConcurrentRuns: config.maxConcurrentRuns,
					maxInFlight: config.maxInFlight,
					backlog: { perJob: config.backlogPerJob, total: config.backlogTotal, thresholdMs: config.misfireThresholdMs },
					clockSkewBoundMs: config.clockSkewBoundMs,
					heartbeatMs: config.heartbeatMs,
					stopGraceMs: STOP_GRACE_MS,
					registration: { host: os.hostname(), pid: process.pid, capacity: config.workerCapacity },
				},
				{ clock, coordination: this.coordination, jobs: brokerJobsClient(this.broker), runner, outbox, logger, metrics: workerMetrics(this.broker) },
			);
		},

		async started(this: WorkerThis) {
			await this.broker.waitForServices(["jobs"], 60_000);
			await this.engine.start();
		},

		async stopped(this: WorkerThis) {
			await this.engine.stop();
		},
	};
}
