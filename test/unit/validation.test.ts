import { FieldError, ForbiddenFieldError } from "../../lib/core/errors";
import { JOB_SCHEMA } from "../../lib/core/job-schema";
import {
	ID_PATTERN,
	MAX_COMMAND_BYTES,
	MAX_ENV_BYTES,
	MAX_SCHEDULE_LENGTH,
	MAX_PAGE_LIMIT,
	MAX_PAGE_OFFSET,
	MAX_TOKEN_LENGTH,
	validateJobCreate,
	validateJobPatch,
	validatePathId,
	type JobCreateInput,
} from "../../lib/core/validation";

const USER = { admin: false };
const ADMIN = { admin: true };
const base = { type: "command", executable: "echo hi", schedule: "*/5 * * * *" };

function errorOf(fn: () => unknown): FieldError {
	try {
		fn();
	} catch (e) {
		if (e instanceof FieldError) return e;
		throw e;
	}
	throw new Error("expected a FieldError");
}

describe("validateJobCreate: defaults and normalization", () => {
	test("minimal body gets every default", () => {
		expect(validateJobCreate({ ...base }, USER)).toEqual<JobCreateInput>({
			type: "command",
			executable: "echo hi",
			schedule: "*/5 * * * *",
			timezone: "UTC",
			name: null,
			runAs: null,
			timeout: null,
			recurring: true,
			concurrency: "allow",
			retries: 0,
			misfire: "run_once",
			startingDeadline: null,
			env: {},
			secretEnv: {},
			suspended: false,
		});
	});

	test("every field given", () => {
		const body = {
			...base,
			type: "script",
			executable: "IyEvYmluL3NoCmVjaG8gaGkK",
			schedule: "  0 3 * * MON-FRI ",
			timezone: "europe/london",
			name: "nightly",
			runAs: "backup",
			timeout: 600,
			recurring: false,
			concurrency: "forbid",
			retries: 3,
			misfire: "run_all",
			startingDeadline: 30,
			env: { FOO: "bar", _X1: "" },
			secretEnv: { TOKEN: "s3cret" },
			suspended: true,
		};
		expect(validateJobCreate(body, USER)).toEqual<JobCreateInput>({
			type: "script",
			executable: "IyEvYmluL3NoCmVjaG8gaGkK",
			schedule: "0 3 * * MON-FRI",
			timezone: "Europe/London",
			name: "nightly",
			runAs: "backup",
			timeout: 600,
			recurring: false,
			concurrency: "forbid",
			retries: 3,
			misfire: "run_all",
			startingDeadline: 30,
			env: { FOO: "bar", _X1: "" },
			secretEnv: { TOKEN: "s3cret" },
			suspended: true,
		});
	});

	test.each<[string, Record<string, unknown>, Partial<JobCreateInput>]>([
		["undefined is absent", { name: undefined, timeout: undefined }, { name: null, timeout: null }],
		["null name", { name: null }, { name: null }],
		["empty name is null", { name: "" }, { name: null }],
		["name of 200 chars", { name: "n".repeat(200) }, { name: "n".repeat(200) }],
		["null runAs", { runAs: null }, { runAs: null }],
		["runAs with digits, dash, underscore", { runAs: "_svc-01" }, { runAs: "_svc-01" }],
		["runAs 32 chars", { runAs: "a".repeat(32) }, { runAs: "a".repeat(32) }],
		["admin runAs root", { runAs: "root" }, { runAs: "root" }],
		["admin runAs 0 is root", { runAs: "0" }, { runAs: "root" }],
		["null timeout", { timeout: null }, { timeout: null }],
		["timeout 1", { timeout: 1 }, { timeout: 1 }],
		["timeout 86400", { timeout: 86400 }, { timeout: 86400 }],
		["timeout 60.0 is an integer", { timeout: 60.0 }, { timeout: 60 }],
		["retries 10", { retries: 10 }, { retries: 10 }],
		["concurrency replace", { concurrency: "replace" }, { concurrency: "replace" }],
		["misfire skip", { misfire: "skip" }, { misfire: "skip" }],
		["startingDeadline null", { startingDeadline: null }, { startingDeadline: null }],
		["startingDeadline 60", { startingDeadline: 60 }, { startingDeadline: 60 }],
		["recurring false", { recurring: false }, { recurring: false }],
		["alias schedule", { schedule: "@daily" }, { schedule: "@daily" }],
		["seconds schedule", { schedule: "*/10 * * * * *" }, { schedule: "*/10 * * * * *" }],
		["timezone utc", { timezone: "utc" }, { timezone: "UTC" }],
		["binary", { type: "binary", executable: "https://example.com/tool" }, { type: "binary" }],
		["env with 100 entries", { env: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`K${i}`, "v"])) }, {}],
		["env value of 4096 chars", { env: { A: "x".repeat(4096) } }, { env: { A: "x".repeat(4096) } }],
		["command of exactly 65535 bytes (MySQL's TEXT)", { executable: "x".repeat(65535) }, {}],
		["script executable not bound by the command limit", { type: "script", executable: "A".repeat(70000) }, {}],
	])("%s", (_name, extra, expected) => {
		const out = validateJobCreate({ ...base, ...extra }, ADMIN);
		expect(out).toMatchObject(expected);
	});

	test("maxTimeoutSec bounds the timeout and becomes the default", () => {
		expect(validateJobCreate({ ...base }, { admin: false, maxTimeoutSec: 3600 }).timeout).toBe(3600);
		expect(validateJobCreate({ ...base, timeout: null }, { admin: false, maxTimeoutSec: 3600 }).timeout).toBe(3600);
		expect(validateJobCreate({ ...base, timeout: 60 }, { admin: false, maxTimeoutSec: 3600 }).timeout).toBe(60);
		const e = errorOf(() => validateJobCreate({ ...base, timeout: 3601 }, { admin: false, maxTimeoutSec: 3600 }));
		expect(e.field).toBe("timeout");
		expect(e.message).toMatch(/between 1 and 3600/);
		// a bound above the absolute maximum does not raise it
		expect(errorOf(() => validateJobCreate({ ...base, timeout: 86401 }, { admin: false, maxTimeoutSec: 100000 })).field).toBe("timeout");
	});

	test("the input object is not modified", () => {
		const body = { ...base, timezone: "utc", env: { A: "1" } };
		const copy = JSON.parse(JSON.stringify(body));
		validateJobCreate(body, USER);
		expect(body).toEqual(copy);
	});
});

describe("validateJobCreate: refusals", () => {
	test.each<[string, unknown, string, RegExp]>([
		// name, body, field, message
		["body null", null, "body", /JSON object, got null/],
		["body array", [base], "body", /got an array/],
		["body string", "hello", "body", /got a string/],
		["body number", 42, "body", /got a number/],
		["body date", new Date(0), "body", /plain JSON object/],
		["unknown field", { ...base, command: "x" }, "command", /unknown field "command"/],
		[
			"unknown field __proto__",
			JSON.parse('{"type":"command","executable":"x","schedule":"* * * * *","__proto__":{"admin":true}}'),
			"__proto__",
			/unknown field/,
		],
		["unknown field id", { ...base, id: "abc" }, "id", /unknown field/],
		["unknown field owner", { ...base, owner: "u1" }, "owner", /unknown field/],
		["unknown field reported before missing ones", { schedul: "* * * * *" }, "schedul", /unknown field/],
		["missing type", { executable: "x", schedule: "* * * * *" }, "type", /type is required/],
		["missing executable", { type: "command", schedule: "* * * * *" }, "executable", /executable is required/],
		["missing schedule", { type: "command", executable: "x" }, "schedule", /schedule is required/],
		["empty body", {}, "type", /required/],
		["null type", { ...base, type: null }, "type", /must not be null/],
		["bad type", { ...base, type: "docker" }, "type", /one of command, script, binary; got "docker"/],
		["type wrong case", { ...base, type: "Command" }, "type", /one of/],
		["type number", { ...base, type: 1 }, "type", /got a number/],
		["null executable", { ...base, executable: null }, "executable", /must not be null/],
		["empty executable", { ...base, executable: "" }, "executable", /empty/],
		["blank executable", { ...base, executable: "   " }, "executable", /empty/],
		["executable number", { ...base, executable: 5 }, "executable", /must be a string, got a number/],
		["executable array", { ...base, executable: ["ls"] }, "executable", /got an array/],
		["command over 65535 bytes", { ...base, executable: "x".repeat(65536) }, "executable", /at most 65535 bytes/],
		["command over 65535 bytes in UTF-8", { ...base, executable: "é".repeat(32768) }, "executable", /at most 65535 bytes/],
		[
			"env over 65535 bytes as JSON",
			{ ...base, env: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`K${i}`, "v".repeat(4096)])) },
			"env",
			/at most 65535 bytes as JSON/,
		],
		[
			"schedule longer than its column",
			{ ...base, schedule: `${Array.from({ length: 60 }, (_, i) => i).join(",")} ${Array.from({ length: 24 }, (_, i) => i).join(",")} * * *` },
			"schedule",
			/at most 200 characters/,
		],
		["command with NUL", { ...base, executable: "echo a\u0000b" }, "executable", /NUL/],
		["script empty", { ...base, type: "script", executable: "" }, "executable", /empty/],
		["binary not a string", { ...base, type: "binary", executable: { url: "x" } }, "executable", /must be a string/],
		["null schedule", { ...base, schedule: null }, "schedule", /must not be null/],
		["schedule number", { ...base, schedule: 5 }, "schedule", /must be a string/],
		["bad schedule", { ...base, schedule: "61 * * * *" }, "schedule", /minute value 61/],
		["schedule too few fields", { ...base, schedule: "5 4" }, "schedule", /got 2/],
		["schedule @reboot", { ...base, schedule: "@reboot" }, "schedule", /@reboot/],
		["null timezone", { ...base, timezone: null }, "timezone", /must not be null/],
		["timezone number", { ...base, timezone: 3 }, "timezone", /must be a string/],
		["bad timezone", { ...base, timezone: "Mars/Olympus" }, "timezone", /unknown time zone/],
		["offset timezone", { ...base, timezone: "+02:00" }, "timezone", /not an IANA/],
		["name number", { ...base, name: 7 }, "name", /string or null/],
		["name too long", { ...base, name: "n".repeat(201) }, "name", /at most 200/],
		["name with newline", { ...base, name: "a\nb" }, "name", /control characters/],
		["runAs number", { ...base, runAs: 0 }, "runAs", /user name or null/],
		["runAs uppercase", { ...base, runAs: "Admin" }, "runAs", /POSIX user name/],
		["runAs leading digit", { ...base, runAs: "1000" }, "runAs", /POSIX user name/],
		["runAs too long", { ...base, runAs: "a".repeat(33) }, "runAs", /POSIX user name/],
		["runAs shell injection", { ...base, runAs: "bob; rm -rf /" }, "runAs", /POSIX user name/],
		["runAs option injection", { ...base, runAs: "-u0" }, "runAs", /POSIX user name/],
		["runAs empty", { ...base, runAs: "" }, "runAs", /POSIX user name/],
		["runAs with dot", { ...base, runAs: "a.b" }, "runAs", /POSIX user name/],
		["timeout 0", { ...base, timeout: 0 }, "timeout", /between 1 and 86400/],
		["timeout negative", { ...base, timeout: -5 }, "timeout", /between 1 and 86400/],
		["timeout too big", { ...base, timeout: 86401 }, "timeout", /between 1 and 86400/],
		["timeout fractional", { ...base, timeout: 1.5 }, "timeout", /integer, got 1.5/],
		["timeout string", { ...base, timeout: "60" }, "timeout", /integer, got a string/],
		["timeout NaN-ish", { ...base, timeout: Number.NaN }, "timeout", /integer/],
		["recurring string", { ...base, recurring: "true" }, "recurring", /true or false, got a string/],
		["recurring number", { ...base, recurring: 1 }, "recurring", /true or false/],
		["recurring null", { ...base, recurring: null }, "recurring", /got null/],
		["concurrency bad", { ...base, concurrency: "queue" }, "concurrency", /allow, forbid, replace/],
		["concurrency null", { ...base, concurrency: null }, "concurrency", /got null/],
		["retries 11", { ...base, retries: 11 }, "retries", /between 0 and 10/],
		["retries -1", { ...base, retries: -1 }, "retries", /between 0 and 10/],
		["retries string", { ...base, retries: "2" }, "retries", /integer/],
		["retries null", { ...base, retries: null }, "retries", /got null/],
		["misfire bad", { ...base, misfire: "run_twice" }, "misfire", /run_once, run_all, skip/],
		["startingDeadline 0", { ...base, startingDeadline: 0 }, "startingDeadline", /between 1 and 2678400/],
		["startingDeadline fraction", { ...base, startingDeadline: 1.5 }, "startingDeadline", /integer/],
		["startingDeadline string", { ...base, startingDeadline: "30" }, "startingDeadline", /integer/],
		["startingDeadline too long", { ...base, startingDeadline: 2678401 }, "startingDeadline", /between 1 and 2678400/],
		["env array", { ...base, env: ["A=1"] }, "env", /got an array/],
		["env string", { ...base, env: "A=1" }, "env", /got a string/],
		["env null", { ...base, env: null }, "env", /got null/],
		["env too many", { ...base, env: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`K${i}`, "v"])) }, "env", /at most 100 entries/],
		["env bad key", { ...base, env: { "A-B": "1" } }, "env", /"A-B" must match/],
		["env key leading digit", { ...base, env: { "1A": "1" } }, "env", /must match/],
		["env key with =", { ...base, env: { "A=B": "1" } }, "env", /must match/],
		["env empty key", { ...base, env: { "": "1" } }, "env", /must match/],
		["env reserved prefix", { ...base, env: { CRONJOB_ID: "x" } }, "env", /reserved/],
		["env reserved prefix lower case", { ...base, env: { cronjob_id: "x" } }, "env", /reserved/],
		["env __proto__ key", { ...base, env: JSON.parse('{"__proto__":"x"}') }, "env", /not allowed/],
		["env number value", { ...base, env: { A: 1 } }, "env", /value of "A" must be a string, got a number/],
		["env null value", { ...base, env: { A: null } }, "env", /got null/],
		["env value too long", { ...base, env: { A: "x".repeat(4097) } }, "env", /at most 4096/],
		["env value with NUL", { ...base, env: { A: "a\u0000" } }, "env", /NUL/],
		["suspended string", { ...base, suspended: "no" }, "suspended", /true or false/],
		["first offending field in order", { ...base, retries: 99, timeout: 0 }, "timeout", /between/],
	])("%s", (_name, body, fieldName, message) => {
		const e = errorOf(() => validateJobCreate(body, ADMIN));
		expect(e).not.toBeInstanceOf(ForbiddenFieldError);
		expect(e.field).toBe(fieldName);
		expect(e.message).toMatch(message);
	});

	test.each<[string, unknown]>([
		["root", "root"],
		["0", "0"],
	])("runAs %s is forbidden (403) for non-admins", (_name, value) => {
		const e = errorOf(() => validateJobCreate({ ...base, runAs: value }, USER));
		expect(e).toBeInstanceOf(ForbiddenFieldError);
		expect(e).toBeInstanceOf(FieldError);
		expect(e.name).toBe("ForbiddenFieldError");
		expect(e.constructor.name).toBe("ForbiddenFieldError");
		expect(e.field).toBe("runAs");
	});
});

describe("validateJobPatch", () => {
	test.each<[string, Record<string, unknown>, Record<string, unknown>]>([
		["one field", { name: "x" }, { name: "x" }],
		["clear name", { name: null }, { name: null }],
		["clear runAs", { runAs: null }, { runAs: null }],
		["clear timeout", { timeout: null }, { timeout: null }],
		["schedule trimmed", { schedule: " @hourly " }, { schedule: "@hourly" }],
		["timezone normalized", { timezone: "america/new_york" }, { timezone: "America/New_York" }],
		["suspend", { suspended: true }, { suspended: true }],
		["undefined fields are absent", { name: "x", timeout: undefined }, { name: "x" }],
		["type with executable", { type: "script", executable: "ZWNobwo=" }, { type: "script", executable: "ZWNobwo=" }],
		["executable alone", { executable: "ls -l" }, { executable: "ls -l" }],
		["env replaced", { env: { A: "1" } }, { env: { A: "1" } }],
		[
			"several",
			{ retries: 2, misfire: "skip", concurrency: "replace", recurring: false },
			{ retries: 2, misfire: "skip", concurrency: "replace", recurring: false },
		],
	])("%s", (_name, body, expected) => {
		expect(validateJobPatch(body, USER)).toEqual(expected);
	});

	test.each<[string, unknown, Record<string, unknown>, string, RegExp]>([
		// name, body, extra opts, field, message
		["not an object", "x", {}, "body", /JSON object/],
		["empty", {}, {}, "body", /at least one/],
		["only undefined", { name: undefined }, {}, "body", /at least one/],
		["unknown field", { status: "finished" }, {}, "status", /unknown field/],
		["unknown field owner", { owner: "someone" }, {}, "owner", /unknown field/],
		["type alone", { type: "script" }, {}, "type", /together with executable/],
		["bad type with executable", { type: "exe", executable: "x" }, {}, "type", /one of/],
		["null executable", { executable: null }, {}, "executable", /must not be null/],
		["null schedule", { schedule: null }, {}, "schedule", /must not be null/],
		["null timezone", { timezone: null }, {}, "timezone", /must not be null/],
		["null type", { type: null, executable: "x" }, {}, "type", /must not be null/],
		["bad schedule", { schedule: "* * * * * * *" }, {}, "schedule", /got 7/],
		["bad retries", { retries: 1.5 }, {}, "retries", /integer/],
		["long command for a command job", { executable: "x".repeat(65536) }, { currentType: "command" }, "executable", /65535 bytes/],
		["long command when changing to command", { type: "command", executable: "x".repeat(65536) }, { currentType: "script" }, "executable", /65535 bytes/],
		["timeout above the bound", { timeout: 7200 }, { maxTimeoutSec: 3600 }, "timeout", /between 1 and 3600/],
	])("refuses %s", (_name, body, extra, fieldName, message) => {
		const e = errorOf(() => validateJobPatch(body, { ...USER, ...extra }));
		expect(e.field).toBe(fieldName);
		expect(e.message).toMatch(message);
	});

	test("a script job may get a long base64 executable", () => {
		expect(validateJobPatch({ executable: "A".repeat(70000) }, { ...USER, currentType: "script" }).executable).toHaveLength(70000);
	});

	test("root is forbidden for non-admins and allowed for admins", () => {
		expect(errorOf(() => validateJobPatch({ runAs: "root" }, USER))).toBeInstanceOf(ForbiddenFieldError);
		expect(validateJobPatch({ runAs: "0" }, ADMIN)).toEqual({ runAs: "root" });
	});

	test("clearing the timeout under a bound gives the bound", () => {
		expect(validateJobPatch({ timeout: null }, { admin: false, maxTimeoutSec: 3600 })).toEqual({ timeout: 3600 });
	});
});

describe("runAs for non-admins is limited to the configured accounts", () => {
	const base = { executable: "true", schedule: "* * * * *", type: "command" };
	it.each([
		[false, "nobody", "ok"],
		[false, "mysql", "forbidden"],
		[false, "root", "forbidden"],
		[true, "mysql", "ok"],
		[true, "root", "ok"],
	])("admin=%s runAs=%s -> %s", (admin, user, outcome) => {
		const run = () => validateJobCreate({ ...base, runAs: user }, { admin, userRunAs: ["nobody"] });
		if (outcome === "ok") expect(run().runAs).toBe(user);
		else expect(run).toThrow(ForbiddenFieldError);
	});
});

describe("validatePathId: what a path id may hold", () => {
	test.each(["0b5f6a9e-8d1c-4c39-9a47-2f0a7d6c1e2b", "does-not-exist", "a", "user.name@x", "x".repeat(64), "a~b:c_d"])("%j passes", (id) => {
		expect(validatePathId("id", id)).toBe(id);
	});

	test.each(["", "\u0000", "a\u0000", "\n", "a b", "a/b", "x".repeat(65), "ü", "\u007f", "%00"])("%j is a FieldError naming the field", (id) => {
		expect(errorOf(() => validatePathId("id", id)).field).toBe("id");
	});

	test.each([[undefined], [null], [5], [["a"]]])("%j (not a string) is refused", (v) => {
		expect(errorOf(() => validatePathId("jobId", v)).field).toBe("jobId");
	});

	test("the bounds of what a job row holds are its columns'", () => {
		expect(MAX_SCHEDULE_LENGTH).toBe(JOB_SCHEMA.schedule.column.length);
		expect(JOB_SCHEMA.executable.column.kind).toBe("text");
		expect(JOB_SCHEMA.env.column.kind).toBe("text");
		expect(MAX_COMMAND_BYTES).toBe(65_535);
		expect(MAX_ENV_BYTES).toBe(65_535);
	});

	test("the bounds the edge shares", () => {
		expect(MAX_PAGE_LIMIT).toBe(1000);
		expect(Number.isSafeInteger(MAX_PAGE_OFFSET)).toBe(true);
		expect(MAX_TOKEN_LENGTH).toBe(512);
		expect(ID_PATTERN.test("x".repeat(64))).toBe(true);
	});
});
