/**
 * ZookeeperMixin(factory): the coordination session of a service (the worker, the manager), owned by
 * the service's lifecycle: built in `created` with the SERVICE's logger (so the session's warnings,
 * "suspended", "expired", "lost", and failing listeners land in that service's log), connected in
 * `started`, closed in `stopped` (after the service's own `stopped`: Moleculer runs the mixins' last).
 *
 * The factory decides the backend: ZooKeeper in a cluster (ZookeeperCoordination), the in-process
 * twin on the embedded default (MemoryCoordination); app/node.ts's coordinationFactory passes it.
 *
 * The host service gets ZookeeperMixinMethods: `this.coordination`, and typed methods for what the
 * services do with it. Declare them on the service's `this` type (`interface WorkerThis extends
 * Service, ZookeeperMixinMethods`) so tsc checks the contract.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Candidacy, Claim, Coordination, LeadershipHandlers, WorkerRegistration } from "../lib/core/coordination";
import type { CoordinationFactory, CoordinationLogger } from "../lib/adapters/coordination-support";

export type { CoordinationFactory, CoordinationLogger };

/** What the mixin gives the host service. */
export interface ZookeeperMixinMethods {
	/** This service's own coordination session (one ZooKeeper session per service). */
	coordination: Coordination;
	/** Register a worker (ephemeral: it goes with the session; re-created after an expiry). */
	registerWorker(info: WorkerRegistration): Promise<void>;
	/** Update the registration this session made (heartbeat, clock offset); NotFoundError if it made none. */
	updateRegistration(info: WorkerRegistration): Promise<void>;
	/** Follow a worker's assignment: called with its sorted job ids on every change, and once soon. Returns the unsubscribe. */
	watchAssignment(workerId: string, listener: (jobIds: string[]) => void): () => void;
	/** Claim a fire (job, scheduled time) for `owner`; null when another live owner holds it. */
	claimFire(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null>;
	/** Campaign for leadership as `candidateId`; the handlers run in order, never overlapping. */
	lead(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy>;
}

type Host = Service & ZookeeperMixinMethods;

/** The mixin's methods: every one of ZookeeperMixinMethods but the `coordination` it sets. */
type Methods = {
	[K in Exclude<keyof ZookeeperMixinMethods, "coordination">]: (
		this: Host,
		...args: Parameters<ZookeeperMixinMethods[K]>
	) => ReturnType<ZookeeperMixinMethods[K]>;
};

const methods: Methods = {
	registerWorker(info) {
		return this.coordination.registerWorker(info);
	},
	updateRegistration(info) {
		return this.coordination.updateWorker(info);
	},
	watchAssignment(workerId, listener) {
		return this.coordination.watchAssignments(workerId, listener);
	},
	claimFire(jobId, scheduledAt, owner) {
		return this.coordination.claim(jobId, scheduledAt, owner);
	},
	lead(candidateId, handlers) {
		return this.coordination.campaign(candidateId, handlers);
	},
};

export function ZookeeperMixin(factory: CoordinationFactory): Partial<ServiceSchema> {
	const mixin: Partial<ServiceSchema<ServiceSettingSchema, Host>> = {
		methods,
		created(this: Host) {
			// Moleculer's LoggerInstance has debug/info/warn/error (and more) taking any arguments.
			const logger: CoordinationLogger = this.logger;
			this.coordination = factory(logger);
		},
		async started(this: Host) {
			await this.coordination.connect();
		},
		async stopped(this: Host) {
			await this.coordination.close();
		},
	};
	// Moleculer types lifecycle handlers and methods on the base Service; the mixin's `this` is Host.
	return mixin as unknown as Partial<ServiceSchema>;
}
