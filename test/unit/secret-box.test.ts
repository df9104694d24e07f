/**
 * Secret values at rest (lib/adapters/secrets/secret-box.ts) and the secretEnv rules of the core
 * (lib/core/validation.ts sealSecretEnv, checkEnvDisjoint).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, FieldError, RunSetupError } from "../../lib/core/errors";
import { SECRET_MASK } from "../../lib/core/job-schema";
import { checkEnvDisjoint, sealSecretEnv, validateJobCreate } from "../../lib/core/validation";
import { keyId, loadSecretBox, parseKey, SecretBox } from "../../lib/adapters/secrets/secret-box";

const K1 = Buffer.alloc(32, 1);
const K2 = Buffer.alloc(32, 2);

describe("SecretBox", () => {
	test("seals with a fresh IV each time and opens what it sealed", () => {
		const box = new SecretBox(K1);
		const a = box.seal("hunter2");
		const b = box.seal("hunter2");
		expect(a).not.toBe(b);
		expect(a).not.toContain("hunter2");
		expect(a.startsWith(`v1.${keyId(K1)}.`)).toBe(true);
		expect(box.open(a)).toBe("hunter2");
		expect(box.open(box.seal(""))).toBe("");
		expect(box.open(box.seal("ünïcødé ✓"))).toBe("ünïcødé ✓");
	});

	test("an altered envelope, another key or a foreign text does not open, and the error names no value", () => {
		const box = new SecretBox(K1);
		const sealed = box.seal("hunter2");
		const parts = sealed.split(".");
		const flipped = Buffer.from(parts[3], "base64url");
		flipped[0] ^= 1;
		const altered = [...parts.slice(0, 3), flipped.toString("base64url"), parts[4]].join(".");
		for (const bad of [altered, new SecretBox(K2).seal("hunter2"), "hunter2", "v1.x.y"]) {
			let err: unknown = null;
			try {
				box.open(bad);
			} catch (e) {
				err = e;
			}
			expect(err).toBeInstanceOf(RunSetupError);
			expect((err as Error).message).not.toContain("hunter2");
		}
	});

	test("a key ring: the previous key still opens, rotation re-seals with the current one", () => {
		const old = new SecretBox(K1);
		const sealed = old.seal("s");
		const ring = new SecretBox(K2, [K1]);
		expect(ring.open(sealed)).toBe("s");
		expect(ring.stale(sealed)).toBe(true);
		const again = ring.seal(ring.open(sealed));
		expect(ring.stale(again)).toBe(false);
		expect(() => old.open(again)).toThrow(RunSetupError);
	});

	test.each([
		["64 hex digits", "ab".repeat(32), true],
		["base64", K1.toString("base64"), true],
		["base64url", K2.toString("base64url"), true],
		["too short", "ab".repeat(16), false],
		["not a key", "correct horse battery staple", false],
	])("parseKey: %s", (_name, text, ok) => {
		expect(parseKey(text) !== null).toBe(ok);
	});
});

describe("loadSecretBox", () => {
	const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), "secret-key-"));

	test("the embedded default generates <data>/secret-key (0600) once and reuses it", () => {
		const dataDir = dir();
		const a = loadSecretBox({ secretKey: null, secretKeyPrevious: [], transporter: null, dataDir });
		const file = path.join(dataDir, "secret-key");
		expect(fs.statSync(file).mode & 0o777).toBe(0o600);
		const b = loadSecretBox({ secretKey: null, secretKeyPrevious: [], transporter: null, dataDir });
		expect(b.open(a.seal("x"))).toBe("x");
		fs.rmSync(dataDir, { recursive: true });
	});

	test("a cluster without CRONJOB_SECRET_KEY refuses to start, saying what to set", () => {
		const dataDir = dir();
		expect(() => loadSecretBox({ secretKey: null, secretKeyPrevious: [], transporter: "nats://127.0.0.1:4222", dataDir })).toThrow(
			expect.objectContaining({ constructor: ConfigError, message: expect.stringContaining("CRONJOB_SECRET_KEY is not set") as unknown }),
		);
		expect(fs.existsSync(path.join(dataDir, "secret-key"))).toBe(false);
		expect(() => loadSecretBox({ secretKey: "nope", secretKeyPrevious: [], transporter: "nats://x", dataDir })).toThrow(ConfigError);
		const box = loadSecretBox({ secretKey: "cd".repeat(32), secretKeyPrevious: ["ab".repeat(32)], transporter: "nats://x", dataDir });
		expect(box.open(new SecretBox(Buffer.from("ab".repeat(32), "hex")).seal("old"))).toBe("old");
		fs.rmSync(dataDir, { recursive: true });
	});
});

describe("secretEnv rules", () => {
	const seal = (v: string) => `sealed(${v})`;

	test("validated as env, under its own field name", () => {
		const base = { type: "command", executable: "true", schedule: "* * * * *" };
		expect(validateJobCreate({ ...base, secretEnv: { TOKEN: "x" } }, { admin: false }).secretEnv).toEqual({ TOKEN: "x" });
		for (const bad of [{ "bad key": "x" }, { CRONJOB_X: "x" }, { A: 1 }, []]) {
			expect(() => validateJobCreate({ ...base, secretEnv: bad }, { admin: false })).toThrow(expect.objectContaining({ field: "secretEnv" }));
		}
	});

	test("sealSecretEnv seals given values, keeps a masked one as stored, drops the rest, refuses the mask with nothing stored", () => {
		expect(sealSecretEnv({ A: "1", B: SECRET_MASK }, { B: "sealed-b", C: "sealed-c" }, seal)).toEqual({ A: "sealed(1)", B: "sealed-b" });
		expect(() => sealSecretEnv({ A: SECRET_MASK }, {}, seal)).toThrow(FieldError);
	});

	test("checkEnvDisjoint: a variable is in env or in secretEnv, not both", () => {
		expect(() => checkEnvDisjoint({ A: "1" }, { B: "x" })).not.toThrow();
		expect(() => checkEnvDisjoint({ A: "1" }, { A: "x" })).toThrow(expect.objectContaining({ field: "secretEnv" }));
	});
});
