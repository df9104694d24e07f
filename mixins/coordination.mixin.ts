/**
 * CoordinationMixin(factory): gives a service its own coordination session as `this.coordination`
 * (created in `created`, connected in `started`, closed in `stopped`). The single-node default
 * passes a factory of MemoryCoordination sessions; the cluster passes ZookeeperMixin's.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Coordination } from "../lib/core/coordination";

export interface CoordinationService extends Service {
	coordination: Coordination;
}

export function CoordinationMixin(factory: () => Coordination): Partial<ServiceSchema> {
	const mixin: Partial<ServiceSchema<ServiceSettingSchema, CoordinationService>> = {
		created(this: CoordinationService) {
			this.coordination = factory();
		},
		async started(this: CoordinationService) {
			await this.coordination.connect();
		},
		async stopped(this: CoordinationService) {
			await this.coordination.close();
		},
	};
	// Moleculer types lifecycle handlers on the base Service; the mixin's `this` has `coordination`.
	return mixin as unknown as Partial<ServiceSchema>;
}
