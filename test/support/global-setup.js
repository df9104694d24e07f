/**
 * Jest global setup: job processes run from the compiled runner (dist/bin/runner.js, see
 * lib/adapters/process/runner-pool.ts), so a suite started with plain `npx jest` on a fresh checkout builds it first.
 * `npm test` builds before jest anyway; this only covers running jest directly.
 */
const { existsSync } = require("fs");
const { execFileSync } = require("child_process");
const path = require("path");

module.exports = async function globalSetup() {
	const root = path.resolve(__dirname, "../..");
	if (existsSync(path.join(root, "dist/bin/runner.js"))) return;
	execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", path.join(root, "tsconfig.build.json")], { stdio: "inherit" });
};
