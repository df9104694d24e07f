/**
 * Moleculer broker options, built from our Config. No transporter on the embedded default (one
 * process); TRANSPORTER=nats://... in a cluster. The Prometheus reporter serves /metrics when
 * METRICS_PORT is set.
 */
import type { BrokerOptions } from "moleculer";
import { loadConfig, type Config } from "./lib/config";
import { replCommands } from "./app/repl";

export function brokerOptions(config: Config): BrokerOptions {
	return {
		namespace: config.namespace,
		nodeID: config.nodeId,
		transporter: config.transporter ?? undefined,
		logger: { type: "Console", options: { level: config.logLevel, formatter: "short", colors: process.stdout.isTTY } },
		logLevel: config.logLevel as BrokerOptions["logLevel"],
		requestTimeout: 30_000,
		heartbeatInterval: 2,
		heartbeatTimeout: 6,
		retryPolicy: { enabled: false },
		registry: { strategy: "RoundRobin", preferLocal: true },
		metrics: {
			enabled: config.metricsPort !== null,
			reporter: config.metricsPort !== null ? [{ type: "Prometheus", options: { port: config.metricsPort, path: "/metrics" } }] : [],
		},
		tracing: { enabled: false },
		replCommands: replCommands(),
	};
}

/** For moleculer-runner (it calls a function export): options from the environment, read when called. */
export default function (): BrokerOptions {
	return brokerOptions(loadConfig(process.env));
}
