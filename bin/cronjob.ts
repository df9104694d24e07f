#!/usr/bin/env node
/**
 * Starts one node: `npm start` runs every service in one process on the embedded default; the
 * environment (see README) turns it into a cluster node. `--repl` opens the Moleculer REPL.
 */
import type { ServiceBroker } from "moleculer";
import { loadConfig } from "../lib/config";
import { createNode } from "../app/node";

async function main() {
	const repl = process.argv.includes("--repl");
	// `npm run repl` in a cluster joins it as a bare node (no services of its own) unless SERVICES says
	// otherwise; on the embedded default it runs everything, with the REPL on top.
	const env = repl && process.env.TRANSPORTER && !process.env.SERVICES ? { ...process.env, SERVICES: "none" } : process.env;
	const config = loadConfig(env);
	const broker = createNode(config);
	await broker.start();
	// moleculer's typings leave repl() out (it falls under ServiceBroker's `any` index signature).
	if (repl) (broker as ServiceBroker & { repl(): unknown }).repl();
	else
		broker.logger.info(
			`distributed-cronjob node ${config.nodeId} runs ${config.services.join(", ")}` + (config.services.includes("api") ? ` on port ${config.port}` : ""),
		);
}

main().catch((err) => {
	process.stderr.write(`distributed-cronjob failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
	process.exit(1);
});
