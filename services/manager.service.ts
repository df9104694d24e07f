/**
 * manager: runs on one or more nodes; exactly one leads (elected through the coordination backend)
 * and assigns the schedulable jobs to the live workers. The logic is the ManagerEngine
 * (lib/engine/manager); this service gives it the broker (the jobs service, the logger, the metrics)
 * and answers the actions and the jobs.changed event.
 */
import type { Context, Service, ServiceBroker, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Clock } from "../lib/core/clock";
import type { Config } from "../lib/config";
import { METRICS, registerMetric } from "../lib/adapters/moleculer/metrics";
import { ManagerEngine } from "../lib/engine/manager/manager-engine";
import type { JobsClient, ManagerMetrics } from "../lib/engine/manager/ports";
import { ZookeeperMixin, type CoordinationFactory, type ZookeeperMixinMethods } from "../mixins/zookeeper.mixin";
import { ErrorsMixin } from "../lib/adapters/moleculer/errors";

export interface ManagerDeps {
	config: Config;
	clock: Clock;
	coordination: CoordinationFactory;
}

interface ManagerThis extends Service, ZookeeperMixinMethods {
	engine: ManagerEngine;
}

/** The jobs service, as the engine asks it. */
function jobsClient(broker: ServiceBroker): JobsClient {
	return {
		schedulable: (page) => broker.call<string[], { after?: string; limit: number }>("jobs.schedulable", page),
		setWorkers: (moves) => broker.call("jobs.setWorkers", { moves }),
	};
}

/** The engine's metrics on the broker's registry (no-ops without metrics). */
function managerMetrics(broker: ServiceBroker): ManagerMetrics {
	registerMetric(broker, { type: "counter", name: METRICS.leaderChanges, description: "Times this manager became leader" });
	registerMetric(broker, { type: "counter", name: METRICS.reassignments, description: "Jobs moved from one worker to another" });
	registerMetric(broker, { type: "gauge", name: METRICS.managerLeader, description: "1 while this manager leads" });
	if (broker.isMetricsEnabled()) {
		broker.metrics.set(METRICS.managerLeader, 0);
		broker.metrics.increment(METRICS.leaderChanges, undefined, 0);
		broker.metrics.increment(METRICS.reassignments, undefined, 0);
	}
	return {
		leaderChanged: () => {
			if (broker.isMetricsEnabled()) broker.metrics.increment(METRICS.leaderChanges);
		},
		reassigned: (count) => {
			if (broker.isMetricsEnabled()) broker.metrics.increment(METRICS.reassignments, undefined, count);
		},
		leading: (isLeader) => {
			if (broker.isMetricsEnabled()) broker.metrics.set(METRICS.managerLeader, isLeader ? 1 : 0);
		},
	};
}

export default function createManagerService(deps: ManagerDeps): ServiceSchema<ServiceSettingSchema, ManagerThis> {
	const { config, clock } = deps;
	return {
		name: "manager",
		mixins: [ZookeeperMixin(deps.coordination), ErrorsMixin()],

		actions: {
			/** The live workers with their job counts and clock offsets (GET /workers). */
			workers: {
				params: {},
				handler(this: ManagerThis) {
					return this.engine.workers();
				},
			},

			leader: {
				params: {},
				handler(this: ManagerThis) {
					return this.engine.leaderInfo();
				},
			},

			/** Force a full reconcile (operators). Only the leader acts. */
			reconcile: {
				params: {},
				async handler(this: ManagerThis) {
					if (!(await this.engine.reconcile())) return { leader: false };
					return { leader: true, stats: this.engine.stats };
				},
			},

			status: {
				params: {},
				handler(this: ManagerThis) {
					return this.engine.status();
				},
			},

			health: {
				visibility: "public",
				params: {},
				handler(this: ManagerThis) {
					return this.engine.health();
				},
			},
		},

		events: {
			"jobs.changed": {
				params: { id: "string", op: "string" },
				handler(this: ManagerThis, _ctx: Context<{ id: string; op: string }>) {
					this.engine.jobsChanged();
				},
			},
		},

		created(this: ManagerThis) {
			// this.coordination: created by ZookeeperMixin's `created`, which runs before this one.
			this.engine = new ManagerEngine({
				selfId: this.broker.nodeID,
				clock,
				coordination: this.coordination,
				jobs: jobsClient(this.broker),
				logger: this.logger,
				metrics: managerMetrics(this.broker),
				clockSkewBoundMs: config.clockSkewBoundMs,
			});
		},

		async started(this: ManagerThis) {
			await this.broker.waitForServices(["jobs"], 60_000);
			await this.engine.start();
		},

		async stopped(this: ManagerThis) {
			await this.engine.stop();
		},
	};
}
