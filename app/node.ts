/**
 * Builds one node: the broker from moleculer.config.ts and the services named in Config.services,
 * each given its dependencies (clock, coordination factory, object store). Used by bin/cronjob.ts
 * and by the tests, so both run exactly the same wiring.
 */
import { ServiceBroker, type Middleware, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import createApiService from "../services/api.service";
import createJobsService from "../services/jobs.service";
import createManagerService from "../services/manager.service";
import createUsersService from "../services/users.service";
import createWorkerService from "../services/worker.service";
import { type Clock } from "../lib/core/clock";
import { systemClock } from "../lib/adapters/system/clock";
import type { Config } from "../lib/config";
import type { CoordinationFactory } from "../lib/adapters/coordination-support";
import type * as ZookeeperModule from "../lib/adapters/zookeeper/coordination";
import { MemoryCoordination, MemoryCoordinationHub } from "../lib/adapters/memory/coordination";
import { transporterFor } from "../lib/adapters/moleculer/nats-transporter";
import { type ObjectStore } from "../lib/adapters/object-store";
import { createObjectStore } from "./object-store";
import { loadSecretBox, type SecretBox } from "../lib/adapters/secrets/secret-box";
import { usesDataDir } from "../lib/core/data-layout";
import { secureDataDir } from "../lib/adapters/local/data-dir";

export interface NodeDeps {
	clock?: Clock;
	/** Shared in-process coordination (single-node default, tests); ignored when config.zookeeper is set. */
	hub?: MemoryCoordinationHub;
	objectStore?: ObjectStore;
	/** Seals and opens jobs' secretEnv; default: from the configuration (lib/adapters/secrets/secret-box.ts loadSecretBox). */
	secrets?: SecretBox;
}

/**
 * How a service (through mixins/zookeeper.mixin.ts) builds its coordination session, given the
 * service's logger: on ZooKeeper in a cluster, on the in-process hub on the embedded default. The
 * session reports its warnings (suspended, expired, lost) and failing listeners to that logger.
 */
export function coordinationFactory(config: Config, hub: MemoryCoordinationHub): CoordinationFactory {
	if (config.zookeeper) {
		const connectionString = config.zookeeper;
		// Loaded only in a cluster: the embedded default never touches the ZooKeeper client.
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const { ZookeeperCoordination } = require("../lib/adapters/zookeeper/coordination") as typeof ZookeeperModule;
		return (logger) => new ZookeeperCoordination({ connectionString, root: config.zkRoot, sessionTimeoutMs: config.zkSessionTimeoutMs, logger });
	}
	return (logger) => new MemoryCoordination(hub, logger);
}

/**
 * The services that use the others stop first, together: the worker stops firing, lets its runs
 * finish and writes their results while the jobs service (the database) is still there; the manager
 * and the API stop beside it. The broker then stops the rest (jobs, users: the connections).
 * Moleculer stops all services at once otherwise.
 */
const STOP_FIRST = ["worker", "manager", "api"];

export function orderedStop(): Middleware {
	const middleware = {
		name: "OrderedStop",
		async stopping(broker: ServiceBroker) {
			const first = STOP_FIRST.map((name) => broker.getLocalService(name)).filter((svc) => !!svc);
			await Promise.all(first.map((svc) => broker.destroyService(svc)));
		},
	};
	// Moleculer's Middleware type has no room for `name` beside the hooks.
	return middleware as unknown as Middleware;
}

export function createNode(config: Config, deps: NodeDeps = {}): ServiceBroker {
	// Before any service opens a file in it: the data folder and what an older version left in it
	// at their private modes (lib/core/data-layout.ts).
	if (usesDataDir({ services: config.services, sqlite: !config.databaseUrl, localObjects: !config.s3 && !deps.objectStore })) secureDataDir(config.dataDir);
	const clock = deps.clock ?? systemClock();
	const hub = deps.hub ?? new MemoryCoordinationHub();
	const objectStore = deps.objectStore ?? createObjectStore({ dataDir: config.dataDir, s3: config.s3 });
	const coordination = coordinationFactory(config, hub);
	// NATS through our transporter, which follows its connection (lib/adapters/moleculer/nats-transporter.ts).
	const transporter = config.transporter ? transporterFor(config.transporter) : undefined;
	// The jobs service seals secret values, the worker opens them; a node with neither needs no key.
	const needsKey = config.services.includes("jobs") || config.services.includes("worker");
	const secrets = deps.secrets ?? (needsKey ? loadSecretBox(config) : null);
	const broker = new ServiceBroker({ ...brokerOptions(config), transporter, middlewares: [orderedStop()] });
	// Each factory types `this` with its own service shape; the broker takes the base schema type.
	const add = (schema: unknown) => broker.createService(schema as ServiceSchema);
	for (const name of config.services) {
		switch (name) {
			case "api":
				add(createApiService({ config, clock }));
				break;
			case "users":
				add(createUsersService({ config, clock }));
				break;
			case "jobs":
				add(createJobsService({ config, clock, objectStore, secrets: secrets as SecretBox }));
				break;
			case "manager":
				add(createManagerService({ config, clock, coordination }));
				break;
			case "worker":
				add(createWorkerService({ config, clock, coordination, objectStore, secrets: secrets as SecretBox }));
				break;
		}
	}
	return broker;
}
