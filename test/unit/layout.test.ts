/**
 * The layout's rules, read from the sources' imports:
 * - lib/core is pure: it imports only itself and croner (cron matching); no node I/O module, no
 *   moleculer, sequelize, ZooKeeper, S3 or database client. (node:crypto's hashing is computation,
 *   not I/O, and is allowed.)
 * - lib/engine imports only lib/core and itself: its I/O comes in through injected interfaces.
 * - nothing under lib/ imports a service, a mixin or the runtime wiring (app/).
 * - lib/engine reads no time and starts no timer but through its injected clock.
 */
import * as fs from "node:fs";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "../..");

function sources(dir: string): string[] {
	const out: string[] = [];
	for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
		const rel = path.join(dir, e.name);
		if (e.isDirectory()) out.push(...sources(rel));
		else if (e.name.endsWith(".ts")) out.push(rel);
	}
	return out;
}

/** Every module specifier a file imports (static imports, re-exports, require and dynamic import). */
export function importsOf(text: string): string[] {
	const specs: string[] = [];
	const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|(?:^|\n)\s*import\s+"([^"]+)"|require\(\s*"([^"]+)"\s*\)|import\(\s*"([^"]+)"\s*\)/g;
	for (let m = re.exec(text); m; m = re.exec(text)) specs.push(m[1] ?? m[2] ?? m[3] ?? m[4]);
	return specs;
}

function resolved(file: string, spec: string): string {
	return spec.startsWith(".") ? path.normalize(path.join(path.dirname(file), spec)) : spec;
}

const CORE_PACKAGES = new Set(["croner", "node:crypto"]);

describe("layout", () => {
	test("importsOf reads every import form", () => {
		expect(
			importsOf(
				'import { a } from "./x";\nimport type { B } from "moleculer";\nexport { c } from "../y";\nimport "z";\nconst q = require("fs");\nawait import("net");',
			),
		).toEqual(["./x", "moleculer", "../y", "z", "fs", "net"]);
	});

	test.each(sources("lib/core"))("%s imports only lib/core and croner", (file) => {
		for (const spec of importsOf(fs.readFileSync(path.join(ROOT, file), "utf8"))) {
			const target = resolved(file, spec);
			const ok = target.startsWith("lib/core/") || CORE_PACKAGES.has(spec);
			if (!ok) throw new Error(`${file} imports ${spec}`);
		}
	});

	test.each(sources("lib/engine"))("%s imports only lib/core and lib/engine", (file) => {
		for (const spec of importsOf(fs.readFileSync(path.join(ROOT, file), "utf8"))) {
			const target = resolved(file, spec);
			if (!target.startsWith("lib/core/") && !target.startsWith("lib/engine/")) throw new Error(`${file} imports ${spec}`);
		}
	});

	test.each(sources("lib"))("%s imports no service, mixin or runtime wiring", (file) => {
		for (const spec of importsOf(fs.readFileSync(path.join(ROOT, file), "utf8"))) {
			const target = resolved(file, spec);
			if (/^(services|mixins|app)\//.test(target) || target === "moleculer.config") throw new Error(`${file} imports ${spec}`);
		}
	});

	test.each(sources("lib/engine"))("%s reads time and sets timers only through the injected clock", (file) => {
		const code = fs
			.readFileSync(path.join(ROOT, file), "utf8")
			.replace(/\/\*[\s\S]*?\*\//g, "")
			.replace(/\/\/.*$/gm, "");
		for (const banned of [
			/\bDate\.now\(/,
			/\bnew Date\(\)/,
			/\bperformance\.now\(/,
			/\bprocess\.hrtime\b/,
			/(?<![.\w])setTimeout\(/,
			/(?<![.\w])setInterval\(/,
			/(?<![.\w])setImmediate\b/,
			/(?<![.\w])clearTimeout\(/,
			/(?<![.\w])clearInterval\(/,
		]) {
			if (banned.test(code)) throw new Error(`${file} uses ${banned.source}`);
		}
	});
});
