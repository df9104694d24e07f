#!/usr/bin/env node
/**
 * Starts one node: `npm start` runs every service in one process on the embedded default; the
 * environment (see README) turns it into a cluster node. `--repl` opens the Moleculer REPL.
 */
import { loadConfig } from "../lib/config";
import { createNode } from "../lib/runtime";

async function main() {
	const config = loadConfig(process.env);
	const broker = createNode(config);
	await broker.start();
	if (process.argv.includes("--repl")) broker.repl();
	else broker.logger.info(`distributed-cronjob node ${config.nodeId} runs ${config.services.join(", ")}` + (config.services.includes("api") ? ` on port ${config.port}` : ""));
}

main().catch((err) => {
	process.stderr.write(`distributed-cronjob failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
	process.exit(1);
});
